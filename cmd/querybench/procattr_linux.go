package main

import "syscall"

// childAttr puts a server in a process group of its own, so that a Ctrl-C
// reaches querybench alone, which then stops it after cleaning up; and makes
// it die with querybench even when querybench is killed and cannot stop it.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}
