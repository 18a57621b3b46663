package signer

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/modgate/modgate/internal/atomicfile"
	"github.com/modgate/modgate/internal/secretfile"
	"golang.org/x/mod/sumdb/note"
)

// File names of the enterprise note key inside the data directory.
const (
	SignerKeyFile   = "note.key" // the private signer key, mode 0600
	VerifierKeyFile = "note.pub" // the public verifier key, usable as GOSUMDB
)

// ErrInsecureKey reports a secret file that group or others may read. It
// is secretfile.ErrInsecureKey, the one sentinel of every secret file.
var ErrInsecureKey = secretfile.ErrInsecureKey

// CreateKey generates an enterprise note key named name and writes it to dir,
// unless a key is already there: it never overwrites one. It returns the
// verifier key and whether it created a new key.
//
// The signer key is written first, then the verifier key: a note.key
// alone is what a crash in between leaves, and CreateKey then writes its
// note.pub. A note.pub alone (a client's copy) is never replaced.
func CreateKey(dir, name string) (vkey string, created bool, err error) {
	pub := filepath.Join(dir, VerifierKeyFile)
	if _, err := os.Stat(filepath.Join(dir, SignerKeyFile)); err == nil {
		if _, err := os.Stat(pub); errors.Is(err, fs.ErrNotExist) {
			return completeKey(dir)
		}
		_, vkey, err := LoadKey(dir)
		return vkey, false, err
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", false, fmt.Errorf("checking note key: %w", err)
	}
	skey, vkey, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		return "", false, fmt.Errorf("generating note key %q: %w", name, err)
	}
	if err := writeNew(filepath.Join(dir, SignerKeyFile), skey+"\n", 0o600); err != nil {
		return "", false, err
	}
	if err := writeNew(pub, vkey+"\n", 0o644); err != nil {
		return "", false, err
	}
	return vkey, true, nil
}

// completeKey writes the note.pub of the lone note.key in dir.
func completeKey(dir string) (string, bool, error) {
	skey, err := ReadSecret(filepath.Join(dir, SignerKeyFile))
	if err != nil {
		return "", false, err
	}
	vkey, err := verifierOf(skey)
	if err != nil {
		return "", false, fmt.Errorf("%s: %w", SignerKeyFile, err)
	}
	if err := writeNew(filepath.Join(dir, VerifierKeyFile), vkey+"\n", 0o644); err != nil {
		return "", false, err
	}
	return vkey, true, nil
}

// verifierOf returns the verifier key of an Ed25519 note signer key
// ("PRIVATE+KEY+<name>+<hash>+<base64 of 0x01 and the seed>"), checked
// against the signer that skey makes.
func verifierOf(skey string) (string, error) {
	s, err := note.NewSigner(skey)
	if err != nil {
		return "", err
	}
	parts := strings.SplitN(skey, "+", 5)
	if len(parts) != 5 {
		return "", errors.New("malformed signer key")
	}
	raw, err := base64.StdEncoding.DecodeString(parts[4])
	if err != nil || len(raw) != 1+ed25519.SeedSize || raw[0] != 1 {
		return "", errors.New("not an Ed25519 signer key")
	}
	pub := ed25519.NewKeyFromSeed(raw[1:]).Public().(ed25519.PublicKey)
	vkey := parts[2] + "+" + parts[3] + "+" + base64.StdEncoding.EncodeToString(append([]byte{1}, pub...))
	v, err := note.NewVerifier(vkey)
	if err != nil || v.Name() != s.Name() || v.KeyHash() != s.KeyHash() {
		return "", errors.New("the verifier key derived from it does not match")
	}
	return vkey, nil
}

// LoadKey reads the enterprise note key from dir. It refuses a signer key
// file that group or others can read.
func LoadKey(dir string) (note.Signer, string, error) {
	skey, err := ReadSecret(filepath.Join(dir, SignerKeyFile))
	if err != nil {
		return nil, "", err
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		return nil, "", fmt.Errorf("parsing %s: %w", SignerKeyFile, err)
	}
	b, err := os.ReadFile(filepath.Join(dir, VerifierKeyFile))
	if err != nil {
		return nil, "", fmt.Errorf("reading verifier key: %w", err)
	}
	vkey := strings.TrimSpace(string(b))
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, "", fmt.Errorf("parsing %s: %w", VerifierKeyFile, err)
	}
	if v.Name() != s.Name() || v.KeyHash() != s.KeyHash() {
		return nil, "", fmt.Errorf("%s does not match %s", VerifierKeyFile, SignerKeyFile)
	}
	return s, vkey, nil
}

// ReadSecret reads a secret file, trimmed of surrounding space, after checking
// that only its owner may read it (secretfile.Read).
func ReadSecret(path string) (string, error) {
	b, err := secretfile.Read(path)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// WriteSecret writes a new secret file of mode 0600; it never overwrites.
func WriteSecret(path, value string) error {
	return writeNew(path, value+"\n", 0o600)
}

// writeNew writes a new file atomically and durably (atomicfile.Create):
// a crash never leaves a half-written file, and an existing file is kept.
func writeNew(path, data string, mode os.FileMode) error {
	return atomicfile.Create(path, []byte(data), mode)
}

// LoadVerifier reads the enterprise verifier key (the public half) from
// dir's note.pub. It needs neither the signer key nor permission to read it,
// so it works on a machine that holds only note.pub.
func LoadVerifier(dir string) (string, error) {
	path := filepath.Join(dir, VerifierKeyFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading the verifier key: %w", err)
	}
	vkey := strings.TrimSpace(string(b))
	if _, err := note.NewVerifier(vkey); err != nil {
		return "", fmt.Errorf("parsing %s: %w", path, err)
	}
	return vkey, nil
}
