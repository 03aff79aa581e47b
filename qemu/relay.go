package qemu

import (
	"context"
	"fmt"
	"io"
	"net"
	"time"
)

// Relay joins one guest connection to a TCP service on the host: QEMU's
// guestfwd "cmd:" target runs a command per connection with the guest's
// stream on its stdin and stdout, and `weft qemu relay ADDR` is that
// command. It returns when either side closes.
//
// This is how a test serves the guest at an address of the guest network
// (10.0.2.100, or 169.254.169.254 with Net 169.254.0.0/16) from a server
// on the host's loopback, one connection per process, so HTTP clients may
// open as many as they like (a plain tcp: guestfwd is a single connection).
func Relay(ctx context.Context, addr string, in io.Reader, out io.Writer) error {
	d := net.Dialer{Timeout: 5 * time.Second}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("relay to %s: %w", addr, err)
	}
	defer c.Close()
	done := make(chan error, 2)
	go func() {
		_, err := io.Copy(c, in)
		// The guest closed its side: pass the half-close on, keep reading.
		if tc, ok := c.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
		done <- err
	}()
	go func() {
		_, err := io.Copy(out, c)
		done <- err
	}()
	select {
	case err = <-done:
		if err == nil {
			// One direction ended cleanly; the reply may still be coming.
			select {
			case err = <-done:
			case <-ctx.Done():
			}
		}
	case <-ctx.Done():
	}
	if err != nil {
		return fmt.Errorf("relay to %s: %w", addr, err)
	}
	return nil
}
