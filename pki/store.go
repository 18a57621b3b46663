package pki

import (
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/modgate/modgate/internal/atomicfile"
	"github.com/modgate/modgate/internal/secretfile"
)

// File names of the CA inside its directory.
const (
	// CertFile is the CA certificate, PEM, mode 0644.
	CertFile = "ca.pem"
	// KeyFile is the CA private key, PKCS #8 PEM, mode 0600.
	KeyFile = "ca-key.pem"
)

// Save writes the CA to dir as ca.pem (0644, from Cert) and ca-key.pem
// (0600), creating dir (0700) if needed. It refuses a CA that is not a
// name-constrained CA matching its key (ErrInvalidCA). It never
// overwrites: if either file exists it returns an error wrapping ErrExists
// and writes nothing. Each
// file is written to a temporary file, synced, and then hard-linked into
// place, so a crash never leaves a partly written key under the real name.
func (ca *CA) Save(dir string) error {
	if ca == nil || ca.Cert == nil {
		return fmt.Errorf("%w: no certificate", ErrInvalidCA)
	}
	if err := checkCA(ca.Cert, ca.Key); err != nil {
		return err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw})
	keyDER, err := x509.MarshalPKCS8PrivateKey(ca.Key)
	if err != nil {
		return fmt.Errorf("pki: encoding CA key: %w", err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("pki: creating CA directory: %w", err)
	}
	certPath, keyPath := filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile)
	for _, p := range []string{certPath, keyPath} {
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("%w: %s", ErrExists, p)
		}
	}
	// The key is written first: a key alone is what a crash in between
	// leaves, and LoadOrCreate makes its certificate then.
	if err := writeExclusive(keyPath, keyPEM, 0o600); err != nil {
		return err
	}
	if err := writeExclusive(certPath, certPEM, 0o644); err != nil {
		// The key is ours (we just created it) and useless without its
		// certificate; do not leave it behind.
		_ = os.Remove(keyPath)
		return err
	}
	return nil
}

// writeExclusive writes data to path with mode perm, atomically and
// durably (atomicfile.Create). It fails with ErrExists if path exists.
func writeExclusive(path string, data []byte, perm os.FileMode) error {
	err := atomicfile.Create(path, data, perm)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%w: %s", ErrExists, path)
	}
	if err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	return nil
}

// Load reads the CA from dir. It refuses a key file that group or others
// can read (ErrInsecureKey, with the chmod that fixes it), and a certificate
// that is not a name-constrained CA or does not match the key
// (ErrInvalidCA). A missing file gives an error wrapping fs.ErrNotExist.
func Load(dir string) (*CA, error) {
	keyPath := filepath.Join(dir, KeyFile)
	keyPEM, err := readPrivate(keyPath)
	if err != nil {
		return nil, err
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", keyPath, err)
	}
	certPath := filepath.Join(dir, CertFile)
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, fmt.Errorf("pki: reading CA certificate: %w", err)
	}
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%w: %s: no CERTIFICATE PEM block", ErrInvalidCA, certPath)
	}
	ca, err := newCA(block.Bytes, key)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", certPath, err)
	}
	return ca, nil
}

// readPrivate reads the CA key file, which must not be readable by group
// or others (secretfile.Read).
func readPrivate(path string) ([]byte, error) {
	data, err := secretfile.Read(path)
	if err != nil {
		return nil, fmt.Errorf("pki: reading CA key: %w", err)
	}
	return data, nil
}

// parseKey decodes a PKCS #8 (or SEC 1) PEM ECDSA private key.
func parseKey(data []byte) (*ecdsa.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%w: no PEM block in key file", ErrInvalidCA)
	}
	switch block.Type {
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: parsing key: %w", ErrInvalidCA, err)
		}
		ec, ok := k.(*ecdsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("%w: key is %T, want ECDSA", ErrInvalidCA, k)
		}
		return ec, nil
	case "EC PRIVATE KEY":
		k, err := x509.ParseECPrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: parsing key: %w", ErrInvalidCA, err)
		}
		return k, nil
	}
	return nil, fmt.Errorf("%w: unexpected PEM block %q in key file", ErrInvalidCA, block.Type)
}

// LoadOrCreate loads the CA in dir, or, if dir holds neither CA file,
// makes a new CA for names and saves it there (created is then true).
// If only one of the two files exists it refuses, rather than guess.
// A loaded CA must permit every name in names; otherwise the error wraps
// ErrNotPermitted, since name constraints cannot be changed without a new
// CA (move the old files away and run again).
func LoadOrCreate(dir string, names []string) (ca *CA, created bool, err error) {
	if names, err = validateNames(names); err != nil {
		return nil, false, err
	}
	certExists, err := exists(filepath.Join(dir, CertFile))
	if err != nil {
		return nil, false, err
	}
	keyExists, err := exists(filepath.Join(dir, KeyFile))
	if err != nil {
		return nil, false, err
	}
	switch {
	case keyExists && !certExists:
		// What an interrupted Save leaves: the key, written first. No one
		// has seen a certificate for it yet; make it now.
		ca, err := certifyKey(dir, names)
		return ca, err == nil, err
	case certExists && !keyExists:
		// Not what a crash leaves: a certificate copied without its key
		// (a client's data directory). Never replaced unasked.
		return nil, false, fmt.Errorf("pki: %s in %s has no %s (remove it to make a new CA): %w",
			CertFile, dir, KeyFile, fs.ErrNotExist)
	case !keyExists:
		if ca, err = NewCA(names); err != nil {
			return nil, false, err
		}
		if err = ca.Save(dir); err != nil {
			return nil, false, err
		}
		return ca, true, nil
	}
	if ca, err = Load(dir); err != nil {
		return nil, false, err
	}
	for _, n := range names {
		if !ca.Permits(n) {
			return nil, false, fmt.Errorf(
				"%w: the CA in %s does not permit %q (it permits %q); a new CA is needed",
				ErrNotPermitted,
				dir,
				n,
				ca.Names(),
			)
		}
	}
	return ca, false, nil
}

// exists reports whether path exists (as anything, even a broken link).
func exists(path string) (bool, error) {
	_, err := os.Lstat(path)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	}
	return false, fmt.Errorf("pki: %w", err)
}

// certifyKey makes and writes the CA certificate for the lone CA key in
// dir, as NewCA would have.
func certifyKey(dir string, names []string) (*CA, error) {
	keyPath := filepath.Join(dir, KeyFile)
	keyPEM, err := readPrivate(keyPath)
	if err != nil {
		return nil, err
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", keyPath, err)
	}
	ca, err := caForKey(names, key)
	if err != nil {
		return nil, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw})
	if err := writeExclusive(filepath.Join(dir, CertFile), certPEM, 0o644); err != nil {
		return nil, err
	}
	return ca, nil // writeExclusive synced the directory
}
