// Command podbin is the one program in the test pods' images, so that
// the Kubernetes tests need no registry: `podbin pause` is the sandbox's
// pause process (it sleeps until a signal), `podbin serve PORT...`
// accepts TCP on each port and echoes what it reads. It is built static
// and packed into OCI archives by package podimage.
package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: podbin pause | podbin serve PORT...")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "pause":
		pause()
	case "serve":
		if err := serve(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "podbin:", err)
			os.Exit(1)
		}
	default:
		fmt.Fprintf(os.Stderr, "podbin: unknown role %q\n", os.Args[1])
		os.Exit(2)
	}
}

// pause waits for SIGTERM or SIGINT, as the sandbox's pause container
// must: it holds the pod's namespaces and does nothing else.
func pause() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
	<-c
}

// serve echoes on every port until it is killed.
func serve(ports []string) error {
	if len(ports) == 0 {
		return fmt.Errorf("serve: no port given")
	}
	errs := make(chan error, len(ports))
	for _, p := range ports {
		ln, err := net.Listen("tcp", ":"+p)
		if err != nil {
			return fmt.Errorf("listen on %s: %w", p, err)
		}
		fmt.Println("listening on", ln.Addr())
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					errs <- fmt.Errorf("accept on %s: %w", p, err)
					return
				}
				fmt.Println("accepted", c.RemoteAddr(), "on", p)
				go func() {
					defer c.Close()
					io.Copy(c, c)
				}()
			}
		}()
	}
	return <-errs
}
