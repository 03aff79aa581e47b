//go:build !linux

package pid1

import "errors"

// Main runs only on Linux, the appliance's kernel.
func (o Options) Main(args []string) error {
	return errors.New("weft init is PID 1 of the Linux appliance image; it does not run on this OS")
}
