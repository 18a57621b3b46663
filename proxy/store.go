package proxy

import (
	"context"
	"errors"

	"github.com/modgate/modgate/cache"
	"github.com/modgate/modgate/signer"
)

// WitnessStore adapts the cache to the witness's Store.
type WitnessStore struct{ Cache *cache.Store }

var _ signer.Store = WitnessStore{}

// Load implements signer.Store.
func (s WitnessStore) Load(ctx context.Context, key string) ([]byte, error) {
	e, err := s.Cache.Get(ctx, key)
	if errors.Is(err, cache.ErrNotFound) {
		return nil, nil
	}
	return e.Value, err
}

// Store implements signer.Store.
func (s WitnessStore) Store(ctx context.Context, key string, value []byte) error {
	return s.Cache.Put(ctx, key, value)
}

// Swap implements signer.Store.
func (s WitnessStore) Swap(ctx context.Context, key string, old, new []byte) (bool, error) {
	err := s.Cache.CompareAndSwap(ctx, key, old, new)
	if errors.Is(err, cache.ErrConflict) {
		return false, nil
	}
	return err == nil, err
}

// Scan implements signer.Store.
func (s WitnessStore) Scan(ctx context.Context, prefix string, fn func(key string, value []byte) error) error {
	return s.Cache.Scan(ctx, prefix, func(key string, e cache.Entry) error { return fn(key, e.Value) })
}

// Delete implements signer.Store.
func (s WitnessStore) Delete(ctx context.Context, key string) error {
	err := s.Cache.Delete(ctx, key)
	if errors.Is(err, cache.ErrNotFound) {
		return nil
	}
	return err
}
