package main

import "github.com/weftnet/weft/init/pid1"

func init() {
	register("init", "PID 1 of the Weft image (/init); --reboot or --poweroff ask PID 1", func(args []string) error {
		return pid1.Options{HaveCommand: haveCommand, Version: version}.Main(args)
	})
}

// haveCommand tells PID 1 which services this build can run, so that a
// missing one is reported skipped instead of crash-looping.
func haveCommand(name string) bool {
	_, ok := commands[name]
	return ok
}
