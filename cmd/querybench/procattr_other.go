//go:build !linux

package main

import "syscall"

// childAttr is nothing special off Linux, which alone has Pdeathsig.
func childAttr() *syscall.SysProcAttr { return nil }
