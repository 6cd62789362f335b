// Run as a container's only process by tests/test_docker_daemon.py, then
// `docker commit`ted: the layer docker writes from the container's changes
// then holds what docker's own tar writer makes of a whiteout (a removed
// lower file), an opaque directory (a lower directory removed and made
// again), a hard link, a fifo, a setuid file, another owner and a symlink.
// Built static (CGO_ENABLED=0): the image has no libc.
package main

import (
	"fmt"
	"os"
	"syscall"
)

func must(err error) {
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
}

func main() {
	must(os.Remove("/etc/os-release"))
	must(os.RemoveAll("/app"))
	must(os.MkdirAll("/app", 0o755))
	must(os.WriteFile("/app/new", []byte("new\n"), 0o644))
	must(os.Chown("/app/new", 1000, 1000))
	must(os.Link("/app/new", "/app/new-link"))
	must(syscall.Mkfifo("/app/fifo", 0o600))
	must(os.WriteFile("/app/setuid", []byte("s\n"), 0o644))
	must(syscall.Chmod("/app/setuid", 0o4755))
	must(os.Symlink("../bin/sh", "/app/sh"))
	fmt.Println("mutated")
}
