// Package testrig is the home of the rigs that only tests import: the
// environment checks (testenv), namespace topologies (nettest), real BGP
// daemons (bgpd), the multi-host agent lab (lab) and the vRouter's server
// run in the test's process (inproc). Product code never
// imports anything under internal/testrig; internal/'s other packages
// (nsexec, sysd) are product code.
package testrig
