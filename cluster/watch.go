package cluster

import (
	"context"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"
)

// Watch calls fn when the shared state behind channel may have changed:
// once at start, for each notification on channel (its payload), after
// every reconnection (notifications may have been missed meanwhile, so
// payload ""), and every interval (payload ""), the periodic re-read that
// backs LISTEN up. Calls of fn never overlap. Watch reconnects by itself
// with a dedicated connection (not one of the pool's), and returns when
// ctx ends.
func (db *DB) Watch(ctx context.Context, channel string, every time.Duration,
	fn func(ctx context.Context, payload string)) {
	var mu sync.Mutex
	call := func(p string) {
		mu.Lock()
		defer mu.Unlock()
		if ctx.Err() == nil {
			fn(ctx, p)
		}
	}
	call("")
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				call("")
			}
		}
	}()
	log := db.log.With(zap.String("channel", channel))
	down := false
	for ctx.Err() == nil {
		err := db.listen(ctx, channel, func() {
			if down {
				log.Info("cluster database: listening again")
				down = false
			}
			call("")
		}, call)
		if ctx.Err() != nil {
			return
		}
		if !down {
			log.Warn("cluster database: not listening for changes, retrying", zap.Error(err))
			down = true
		}
		select {
		case <-ctx.Done():
		case <-time.After(min(every, time.Second)):
		}
	}
}

// listen runs one LISTEN connection until it fails: connected runs once
// LISTEN holds, then got for each notification.
func (db *DB) listen(ctx context.Context, channel string, connected func(), got func(payload string)) error {
	conn, err := pgx.ConnectConfig(ctx, db.Pool.Config().ConnConfig.Copy())
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{channel}.Sanitize()); err != nil {
		return err
	}
	connected()
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		got(n.Payload)
	}
}
