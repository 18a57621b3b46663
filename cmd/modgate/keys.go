package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/modgate/modgate/pki"
	"github.com/modgate/modgate/signer"
)

// gateFlagUsage documents --gate for the commands that fetch from the gate.
const gateFlagUsage = "fetch it from the gate at this URL (its proxy address, such as http://modgate.example.com:3128) instead of the data directory"

func newCACmd(getenv env, stdout io.Writer) *cobra.Command {
	ca := &cobra.Command{Use: "ca", Short: "The interception CA"}
	cert := &cobra.Command{Use: "cert", Short: "Print the CA certificate as PEM", Args: cobra.NoArgs}
	dataDir := addDataDir(cert, getenv)
	gate := cert.Flags().String("gate", "", gateFlagUsage)
	cert.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := applyEnvAndConfig(cmd.Flags(), getenv, ""); err != nil {
			return err
		}
		if *gate != "" {
			base, err := parseGateURL(*gate)
			if err != nil {
				return usageError{err}
			}
			b, err := fetchCA(cmd.Context(), base)
			if err != nil {
				return err
			}
			_, err = stdout.Write(b)
			return err
		}
		// Only the public certificate: a machine that holds ca.pem alone can print it.
		path := filepath.Join(*dataDir, pki.CertFile)
		b, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf(
				"reading the CA certificate: %w (on a client, give the gate's address: --gate http://<gate>:3128)",
				err,
			)
		}
		if err := checkCAPEM(path, b); err != nil {
			return err
		}
		_, err = stdout.Write(b)
		return err
	}
	ca.AddCommand(cert)
	return ca
}

func newKeyCmd(getenv env, stdout io.Writer) *cobra.Command {
	key := &cobra.Command{Use: "key", Short: "The enterprise note key"}
	verifier := &cobra.Command{
		Use:   "verifier",
		Short: "Print the enterprise verifier key (note.pub, or the gate's with --gate), usable as GOSUMDB",
		Args:  cobra.NoArgs,
	}
	dataDir := addDataDir(verifier, getenv)
	gate := verifier.Flags().String("gate", "", gateFlagUsage)
	verifier.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := applyEnvAndConfig(cmd.Flags(), getenv, ""); err != nil {
			return err
		}
		var vkey string
		if *gate != "" {
			base, err := parseGateURL(*gate)
			if err != nil {
				return usageError{err}
			}
			if vkey, err = fetchVerifierKey(cmd.Context(), base); err != nil {
				return err
			}
		} else {
			var err error
			if vkey, err = signer.LoadVerifier(*dataDir); err != nil {
				return fmt.Errorf("%w (on a client, give the gate's address: --gate http://<gate>:3128)", err)
			}
		}
		fmt.Fprintln(stdout, vkey)
		return nil
	}
	key.AddCommand(verifier)
	return key
}
