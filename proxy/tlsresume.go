package proxy

import (
	"crypto/rand"
	"crypto/tls"
	"sync"
	"time"
)

// ticketRotation is how often the session ticket key of intercepted TLS
// changes; a ticket stays valid for up to twice this (current and
// previous key), like crypto/tls's automatic keys.
const ticketRotation = 12 * time.Hour

// ticketKeys makes TLS session resumption work across intercepted
// connections. intercept clones the server tls.Config per connection, and
// tls.Config.Clone copies session ticket keys only when they were set
// explicitly: with crypto/tls's automatic keys, every clone would make its
// own, so a ticket issued on one connection could never be used on the
// next and every connection would pay a full handshake. So the keys are
// set once on the shared config and rotated here.
type ticketKeys struct {
	mu      sync.Mutex
	created time.Time
	keys    [][32]byte // newest first
}

// shareTickets returns a copy of cfg with a fresh session ticket key.
func (k *ticketKeys) shareTickets(cfg *tls.Config) *tls.Config {
	c := cfg.Clone()
	k.rotate(c, time.Now())
	return c
}

// maybeRotate gives cfg a new ticket key, keeping the previous one, once
// ticketRotation has passed.
func (k *ticketKeys) maybeRotate(cfg *tls.Config) {
	now := time.Now()
	k.mu.Lock()
	due := now.Sub(k.created) >= ticketRotation
	k.mu.Unlock()
	if due {
		k.rotate(cfg, now)
	}
}

func (k *ticketKeys) rotate(cfg *tls.Config, now time.Time) {
	var key [32]byte
	rand.Read(key[:])
	k.mu.Lock()
	defer k.mu.Unlock()
	k.keys = append([][32]byte{key}, k.keys[:min(len(k.keys), 1)]...)
	k.created = now
	cfg.SetSessionTicketKeys(k.keys)
}
