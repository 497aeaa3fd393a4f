package smtp

import (
	"context"
	"sync"
	"time"
)

// pool holds the connections to one destination (a mailbox's submission session, or a
// connector backend's server): at most max open at once, reused across messages, and
// closed once idle for idleTimeout.
type pool struct {
	slots       chan struct{} // one per open or opening connection
	idleTimeout time.Duration

	mu     sync.Mutex
	idle   []*conn // most recently used last
	timer  *time.Timer
	closed bool
}

func newPool(max int, idleTimeout time.Duration) *pool {
	return &pool{slots: make(chan struct{}, max), idleTimeout: idleTimeout}
}

// get returns an idle connection that still answers RSET, or a new one from dial. It
// waits for a free slot as long as ctx allows; errBusy reports that it gave up.
func (p *pool) get(ctx context.Context, dial func(context.Context) (*conn, error)) (*conn, error) {
	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, errBusy
	}
	for {
		c := p.popIdle()
		if c == nil {
			break
		}
		// RSET both clears any state the last transaction left and proves the server
		// has not dropped the connection while it sat idle.
		if err := c.reset(); err == nil {
			c.reused = true
			return c, nil
		}
		c.close()
	}
	c, err := dial(ctx)
	if err != nil {
		<-p.slots
		return nil, err
	}
	return c, nil
}

// put gives c back: kept for reuse when healthy, else closed.
func (p *pool) put(c *conn, healthy bool) {
	defer func() { <-p.slots }()
	p.mu.Lock()
	if !healthy || p.closed || p.idleTimeout <= 0 {
		p.mu.Unlock()
		c.quit()
		return
	}
	c.idleSince = time.Now()
	p.idle = append(p.idle, c)
	if p.timer == nil {
		p.timer = time.AfterFunc(p.idleTimeout, p.reap)
	}
	p.mu.Unlock()
}

func (p *pool) popIdle() *conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(p.idle)
	if n == 0 {
		return nil
	}
	c := p.idle[n-1]
	p.idle = p.idle[:n-1]
	return c
}

// reap closes the connections idle for idleTimeout, and comes back for the others.
func (p *pool) reap() {
	p.mu.Lock()
	p.timer = nil
	cutoff := time.Now().Add(-p.idleTimeout)
	var stale []*conn
	keep := p.idle[:0]
	for _, c := range p.idle {
		if c.idleSince.After(cutoff) {
			keep = append(keep, c)
		} else {
			stale = append(stale, c)
		}
	}
	clear(p.idle[len(keep):])
	p.idle = keep
	if len(keep) > 0 && !p.closed {
		p.timer = time.AfterFunc(time.Until(keep[0].idleSince.Add(p.idleTimeout)), p.reap)
	}
	p.mu.Unlock()
	for _, c := range stale {
		c.quit()
	}
}

// close says QUIT on the idle connections; connections in use close when put back.
func (p *pool) close() {
	p.mu.Lock()
	p.closed = true
	idle := p.idle
	p.idle = nil
	if p.timer != nil {
		p.timer.Stop()
	}
	p.mu.Unlock()
	for _, c := range idle {
		c.quit()
	}
}
