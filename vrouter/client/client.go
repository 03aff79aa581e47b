// Package client connects to a vRouter's control API over its unix socket,
// for the agent and `weft ctl`.
package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	vrouterv1 "github.com/weftnet/weft/vrouter/api/v1"
)

// DefaultSocket is where the vRouter's control API listens.
const DefaultSocket = "/run/weft/vrouter.sock"

// Client is a connection to one vRouter.
type Client struct {
	vrouterv1.VRouterClient
	conn   *grpc.ClientConn
	socket string
}

// Dial connects to the vRouter at socket and checks that it answers with a
// compatible API version within ctx.
func Dial(ctx context.Context, socket string) (*Client, error) {
	conn, err := grpc.NewClient("passthrough:///vrouter",
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		}))
	if err != nil {
		return nil, fmt.Errorf("vrouter %s: %w", socket, err)
	}
	c := &Client{VRouterClient: vrouterv1.NewVRouterClient(conn), conn: conn, socket: socket}
	info, err := c.Info(ctx, &vrouterv1.InfoRequest{}, grpc.WaitForReady(true))
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("vrouter %s: %w (is `weft vrouter` running?)", socket, err)
	}
	if info.GetApiVersion() != 1 {
		conn.Close()
		return nil, fmt.Errorf("vrouter %s: api version %d, this client speaks 1", socket, info.GetApiVersion())
	}
	return c, nil
}

// DialRetry dials until it succeeds or ctx ends (the vRouter may start
// after the agent).
func DialRetry(ctx context.Context, socket string) (*Client, error) {
	delay := 100 * time.Millisecond
	for {
		dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		c, err := Dial(dctx, socket)
		cancel()
		if err == nil {
			return c, nil
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(delay):
		}
		delay = min(2*delay, 2*time.Second)
	}
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Socket is the path dialed.
func (c *Client) Socket() string { return c.socket }

// DumpAll reads every object of the kinds asked for (all when none).
func (c *Client) DumpAll(ctx context.Context, kinds ...string) ([]*vrouterv1.DumpReply, error) {
	st, err := c.Dump(ctx, &vrouterv1.DumpRequest{Kinds: kinds})
	if err != nil {
		return nil, err
	}
	var out []*vrouterv1.DumpReply
	for {
		r, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, r)
	}
}

// SetUnderlayMTU tells the vRouter the underlay's MTU changed; it returns
// the endpoint MTU that follows from it. The vRouter checks the bounds
// (an MTU it refuses is a codes.InvalidArgument error).
func (c *Client) SetUnderlayMTU(ctx context.Context, mtu int) (endpointMTU int, err error) {
	if mtu < 0 || mtu > math.MaxUint32 {
		mtu = 0 // refused by the vRouter like any MTU out of its range
	}
	r, err := c.SetUnderlay(ctx, &vrouterv1.SetUnderlayRequest{Mtu: uint32(mtu)})
	if err != nil {
		return 0, fmt.Errorf("vrouter %s: set underlay mtu %d: %w", c.socket, mtu, err)
	}
	return int(r.GetEndpointMtu()), nil
}
