package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// notifier speaks systemd's sd_notify protocol: one datagram of
// newline-separated KEY=VALUE assignments to the unix socket named by
// $NOTIFY_SOCKET (a path, or "@name" in the abstract namespace). Without
// the variable (not run by systemd with Type=notify) it does nothing.
// These few lines are what coreos/go-systemd's daemon.SdNotify does.
type notifier struct {
	addr string
	log  *slog.Logger
}

func newNotifier(log *slog.Logger) *notifier {
	return &notifier{addr: os.Getenv("NOTIFY_SOCKET"), log: log}
}

// notify sends state; a failure is logged (systemd then times the start
// out, which says more than keygate could).
func (n *notifier) notify(state string) {
	if n.addr == "" {
		return
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: n.addr, Net: "unixgram"})
	if err == nil {
		_, err = conn.Write([]byte(state))
		conn.Close()
	}
	if err != nil {
		n.log.Warn("sd_notify failed", "socket", n.addr, "err", err)
	}
}

// ready: listeners bound, index loaded.
func (n *notifier) ready(status string) { n.notify("READY=1\nSTATUS=" + status) }

// stopping: shutdown began.
func (n *notifier) stopping() { n.notify("STOPPING=1\nSTATUS=shutting down") }

// reloading: a reload begins; MONOTONIC_USEC lets Type=notify-reload
// match it to its SIGHUP.
func (n *notifier) reloading() {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	n.notify(fmt.Sprintf("RELOADING=1\nMONOTONIC_USEC=%d\nSTATUS=reloading", ts.Nano()/1000))
}

// catchSIGHUP starts catching SIGHUP for handleReloads.
func catchSIGHUP() chan os.Signal {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	return hup
}

// handleReloads answers SIGHUP until ctx ends: RELOADING=1, the TLS
// certificate reloaded (when keygate serves HTTPS), READY=1. SIGHUP is
// always caught, so `systemctl reload` (ExecReload=kill -HUP) never stops
// a keygate that has nothing to reload.
func handleReloads(ctx context.Context, hup <-chan os.Signal, certs *certReloader, n *notifier, log *slog.Logger) {
	for {
		select {
		case <-hup:
			n.reloading()
			if certs != nil {
				certs.Reload()
			} else {
				log.Info("SIGHUP: nothing to reload (no --tls-cert); settings change with a restart")
			}
			n.ready("serving")
		case <-ctx.Done():
			return
		}
	}
}

// Credential names keygate reads from $CREDENTIALS_DIRECTORY (systemd's
// LoadCredential=) when --tls-cert and --tls-key are not set.
const (
	credTLSCert = "tls-cert.pem"
	credTLSKey  = "tls-key.pem"
)

// tlsFromCredentials fills empty --tls-cert/--tls-key from systemd
// credentials: a root-owned 0600 key stays root's, and systemd hands the
// service (a DynamicUser) a private copy. Both or neither.
func tlsFromCredentials(c *serveConfig) error {
	dir := os.Getenv("CREDENTIALS_DIRECTORY")
	if dir == "" || c.TLSCert != "" || c.TLSKey != "" {
		return nil
	}
	cert, key := filepath.Join(dir, credTLSCert), filepath.Join(dir, credTLSKey)
	_, cerr := os.Stat(cert)
	_, kerr := os.Stat(key)
	switch {
	case errors.Is(cerr, fs.ErrNotExist) && errors.Is(kerr, fs.ErrNotExist):
		return nil
	case cerr != nil || kerr != nil:
		return fmt.Errorf("systemd credentials in %s: %s and %s go together (LoadCredential=%s:… and LoadCredential=%s:…): %v",
			dir, credTLSCert, credTLSKey, credTLSCert, credTLSKey, errors.Join(cerr, kerr))
	}
	c.TLSCert, c.TLSKey = cert, key
	return nil
}
