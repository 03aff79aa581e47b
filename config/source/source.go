// Package source is where a node's configuration comes from at boot: the
// config drive (a block device labelled config-2), the OpenStack metadata
// service, a weft.config= URL or file, and the last good set kept on disk
// (Store). Each delivers a config.Bundle; package config parses and
// validates it and does no I/O of its own. Only PID 1 (init/pid1) uses
// this package.
package source

import (
	"context"

	"github.com/weftnet/weft/config"
)

// Source is one place a node can read its configuration from.
type Source interface {
	// Name is a short stable name for logs and verdicts: "config-drive",
	// "metadata", "url".
	Name() string
	// Fetch reads the source. An absent source (no drive, a 404) returns
	// an error wrapping config.ErrNotFound; Fetch returns when ctx is done.
	Fetch(ctx context.Context) (*config.Bundle, error)
}
