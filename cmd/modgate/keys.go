package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/modgate/modgate/pki"
	"github.com/modgate/modgate/signer"
)

func newCACmd(getenv env, stdout io.Writer) *cobra.Command {
	ca := &cobra.Command{Use: "ca", Short: "The interception CA"}
	cert := &cobra.Command{Use: "cert", Short: "Print the CA certificate as PEM", Args: cobra.NoArgs}
	dataDir := addDataDir(cert, getenv)
	cert.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := applyEnvAndConfig(cmd.Flags(), getenv, ""); err != nil {
			return err
		}
		c, err := pki.Load(*dataDir)
		if err != nil {
			return err
		}
		_, err = stdout.Write(c.CertPEM)
		return err
	}
	ca.AddCommand(cert)
	return ca
}

func newKeyCmd(getenv env, stdout io.Writer) *cobra.Command {
	key := &cobra.Command{Use: "key", Short: "The enterprise note key"}
	verifier := &cobra.Command{Use: "verifier", Short: "Print the enterprise verifier key, usable as GOSUMDB", Args: cobra.NoArgs}
	dataDir := addDataDir(verifier, getenv)
	verifier.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := applyEnvAndConfig(cmd.Flags(), getenv, ""); err != nil {
			return err
		}
		_, vkey, err := signer.LoadKey(*dataDir)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, vkey)
		return nil
	}
	key.AddCommand(verifier)
	return key
}
