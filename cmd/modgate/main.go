// Command modgate is an egress gate for Go module traffic: an intercepting
// HTTPS proxy and GOPROXY endpoint that serves verified module files from a
// local cache and co-signs the checksum database it witnesses.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
