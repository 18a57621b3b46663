package signer

import (
	"bytes"
	"context"
	"sort"
	"strings"
	"sync"
)

// MemStore is an in-memory Store for tests.
type MemStore struct {
	mu sync.Mutex
	m  map[string][]byte
}

var _ Store = (*MemStore)(nil)

// Load implements Store.
func (s *MemStore) Load(_ context.Context, key string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.m[key]), nil
}

// Store implements Store.
func (s *MemStore) Store(_ context.Context, key string, value []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = make(map[string][]byte)
	}
	s.m[key] = bytes.Clone(value)
	return nil
}

// Swap implements Store.
func (s *MemStore) Swap(_ context.Context, key string, old, new []byte) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.m[key]
	if (old == nil && ok) || (old != nil && !bytes.Equal(cur, old)) {
		return false, nil
	}
	if s.m == nil {
		s.m = make(map[string][]byte)
	}
	s.m[key] = bytes.Clone(new)
	return true, nil
}

// Delete implements Store.
func (s *MemStore) Delete(_ context.Context, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, key)
	return nil
}

// Scan implements Store.
func (s *MemStore) Scan(_ context.Context, prefix string, fn func(key string, value []byte) error) error {
	s.mu.Lock()
	var keys []string
	for k := range s.m {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	s.mu.Unlock()
	sort.Strings(keys)
	for _, k := range keys {
		v, _ := s.Load(context.Background(), k)
		if err := fn(k, v); err != nil {
			return err
		}
	}
	return nil
}

// Keys returns the stored keys with the prefix, sorted.
func (s *MemStore) Keys(prefix string) []string {
	var keys []string
	_ = s.Scan(context.Background(), prefix, func(k string, _ []byte) error { keys = append(keys, k); return nil })
	return keys
}
