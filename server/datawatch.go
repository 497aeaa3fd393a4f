package server

import (
	"context"
	"log/slog"
	"sync"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/mailgate/mailgate/server/store"
)

// dataWatch checks, at start and then every interval, that the store still holds its
// data (store.DataWatcher). While a loss is recorded and not acknowledged, the replica
// is not ready: a Redis that forgot its idempotency records would let retried requests
// be sent a second time, and an operator has to decide what to do about it.
type dataWatch struct {
	w        store.DataWatcher
	interval time.Duration
	timeout  time.Duration
	log      *slog.Logger
	metrics  *metrics
	// health is told NOT_SERVING while a loss is recorded.
	setHealth func(healthpb.HealthCheckResponse_ServingStatus)

	mu      sync.Mutex
	checked bool        // a check has succeeded
	lost    *store.Loss // the recorded loss, as last seen
	failing bool        // the last check failed (logged once per run of failures)
}

// state is what readyz reports: whether a check has succeeded yet, and the loss.
func (d *dataWatch) state() (checked bool, lost *store.Loss) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.checked, d.lost
}

// run checks until ctx is done.
func (d *dataWatch) run(ctx context.Context) {
	t := time.NewTicker(d.interval)
	defer t.Stop()
	for {
		d.check(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (d *dataWatch) check(ctx context.Context) {
	cctx, cancel := context.WithTimeout(ctx, d.timeout)
	st, err := d.w.CheckData(cctx)
	cancel()
	d.mu.Lock()
	defer d.mu.Unlock()
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		d.metrics.storeErrors.WithLabelValues("data_check").Inc()
		// An outage is reported by /readyz and every request; once in the log is enough.
		if !d.failing {
			d.log.Warn("could not check that Redis kept its data", "error", err)
		}
		d.failing = true
		return
	}
	d.failing = false
	for _, k := range st.Created {
		d.log.Info("store marker written: this Redis held no mailgate data (a new Redis, or one that lost its data while no replica was running)", "key", k)
	}
	if st.Detected {
		d.metrics.dataLosses.Inc()
	}
	switch {
	case st.Lost != nil && (d.lost == nil || !st.Lost.At.Equal(d.lost.At)):
		// A new loss, or another one recorded after the first record was lost with the
		// rest of the data.
		d.log.Error("Redis lost mailgate's data: idempotency records are gone, so retried requests may be sent a second time; this replica is not ready until an operator runs `mailgate admin store-ack` (see docs/operations.md#when-redis-lost-its-data)",
			"reason", st.Lost.Reason, "noticed_by", st.Lost.By, "noticed_at", st.Lost.At)
		d.setHealth(healthpb.HealthCheckResponse_NOT_SERVING)
	case st.Lost == nil && d.lost != nil:
		d.log.Info("the loss of Redis's data was acknowledged; ready again", "reason", d.lost.Reason)
		d.setHealth(healthpb.HealthCheckResponse_SERVING)
	}
	d.checked, d.lost = true, st.Lost
	if st.Lost != nil {
		d.metrics.dataLost.Set(1)
	} else {
		d.metrics.dataLost.Set(0)
	}
}
