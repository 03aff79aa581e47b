//go:build !linux

package tunnel

import (
	"errors"
	"net/netip"
)

// The underlay sockets are Linux-only (recvmmsg, UDP GSO/GRO, raw GRE);
// elsewhere the package builds, so that its users do, and refuses to open.

var errUnsupported = errors.New("tunnel: underlay sockets need Linux")

// UDPConn is Linux-only.
type UDPConn struct{}

// ListenUDP fails outside Linux.
func ListenUDP(cfg UDPConfig) (*UDPConn, error) { return nil, errUnsupported }

func (c *UDPConn) Read(msgs []Msg) (int, error)  { return 0, ErrClosed }
func (c *UDPConn) Write(msgs []Msg) (int, error) { return 0, ErrClosed }
func (c *UDPConn) BatchSize() int                { return DefaultBatch }
func (c *UDPConn) GSO() bool                     { return false }
func (c *UDPConn) GRO() bool                     { return false }
func (c *UDPConn) LocalAddr() netip.AddrPort     { return netip.AddrPort{} }
func (c *UDPConn) SourcePorts() []uint16         { return nil }
func (c *UDPConn) SourcePort(hash uint64) uint16 { return 0 }
func (c *UDPConn) Stats() Stats                  { return Stats{} }
func (c *UDPConn) Close() error                  { return nil }

// GREConn is Linux-only.
type GREConn struct{}

// ListenGRE fails outside Linux.
func ListenGRE(local netip.Addr) (*GREConn, error) { return nil, errUnsupported }

func (c *GREConn) Read(msgs []Msg) (int, error)  { return 0, ErrClosed }
func (c *GREConn) Write(msgs []Msg) (int, error) { return 0, ErrClosed }
func (c *GREConn) BatchSize() int                { return DefaultBatch }
func (c *GREConn) GSO() bool                     { return false }
func (c *GREConn) LocalAddr() netip.AddrPort     { return netip.AddrPort{} }
func (c *GREConn) Stats() Stats                  { return Stats{} }
func (c *GREConn) Close() error                  { return nil }

var (
	_ Conn = (*UDPConn)(nil)
	_ Conn = (*GREConn)(nil)
)
