package pid1

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"
)

// The operator console: the image has no shell, so PID 1 answers on a
// second serial port (ttyS1; QEMU connects it to a unix socket, a server's
// BMC to its serial-over-LAN) with a prompt that runs weft's operator
// commands — `ctl status`, `ctl peers`, `ctl routes`, `ctl probe …`,
// `steps` — and nothing else. It runs as root on the node: whoever reaches
// the serial port owns the node anyway.

const operatorTTY = "/dev/ttyS1"

func (n *node) operatorConsole(ctx context.Context) {
	for ctx.Err() == nil {
		tty, err := os.OpenFile(operatorTTY, os.O_RDWR, 0)
		if err != nil {
			return // no second serial port: no console
		}
		n.serveConsole(ctx, tty)
		tty.Close()
		time.Sleep(time.Second)
	}
}

func (n *node) serveConsole(ctx context.Context, tty io.ReadWriter) {
	fmt.Fprintf(tty, "\r\nweft operator console. Commands: ctl status|peers|routes|endpoints|flows|config|probe, steps, help\r\n")
	in := bufio.NewScanner(tty)
	for ctx.Err() == nil {
		host, _ := os.Hostname()
		fmt.Fprintf(tty, "%s weft> ", host)
		if !in.Scan() {
			return
		}
		line := strings.TrimSpace(in.Text())
		if line == "" {
			continue
		}
		args := strings.Fields(line)
		switch args[0] {
		case "help":
			fmt.Fprintf(tty, "ctl status | ctl peers | ctl routes [--network N] | ctl endpoints | ctl flows | ctl config\r\n"+
				"ctl probe --endpoint E --to ADDR [--tcp PORT] | steps [NAME...] (the boot steps and their verdicts)\r\n")
		case "steps":
			writeSteps(tty, n.rec.Steps(), args[1:])
		case "ctl":
			cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
			cmd := exec.CommandContext(cctx, n.exe, append([]string{"ctl"}, args[1:]...)...)
			cmd.Args[0] = "weft"
			out, err := cmd.CombinedOutput()
			cancel()
			tty.Write([]byte(strings.ReplaceAll(string(out), "\n", "\r\n")))
			if err != nil && len(out) == 0 {
				fmt.Fprintf(tty, "%v\r\n", err)
			}
		default:
			fmt.Fprintf(tty, "%q: not a command here (help lists them)\r\n", args[0])
		}
	}
}
