//go:debug multipathtcp=0

// The agent these tests run in process locks its GoBGP hop with a TCP MD5
// key, which an MPTCP listener (Go's default since 1.24) cannot take; the
// weft binary sets the same in cmd/weft/main.go.
package openstack
