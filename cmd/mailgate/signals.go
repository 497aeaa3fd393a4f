package main

import (
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

// sighupIgnored is logged for each SIGHUP: operators send it to reload (systemctl
// reload, kill -HUP), which does not exist yet.
const sighupIgnored = "SIGHUP ignored: configuration reload is not supported yet; restart to apply changes"

// ignoreSIGHUP keeps SIGHUP from ending the process, Go's default, until stop is
// called: a reload, or the terminal closing under a `mailgate serve` started by hand,
// must not take the service down. Each one is logged at warn.
func ignoreSIGHUP(log *slog.Logger) (stop func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-ch:
				log.Warn(sighupIgnored)
			case <-done:
				return
			}
		}
	}()
	return func() {
		signal.Stop(ch)
		close(done)
	}
}
