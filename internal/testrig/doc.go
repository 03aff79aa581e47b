// Package testrig is the home of the rigs that only tests import: the
// environment checks (testenv), namespace topologies (nettest), real BGP
// daemons (bgpd) and the multi-host agent lab (lab). Product code never
// imports anything under internal/testrig; internal/'s other packages
// (nsexec, sysd) are product code.
package testrig
