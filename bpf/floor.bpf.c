/* floor.bpf.c — the benchmark's floor: an XDP program that does nothing but pass the
 * packet. bpf_prog_test_run on it measures the fixed cost of a test run (syscall,
 * context setup, copying the packet in and out), which the benchmark subtracts from
 * the balancer's numbers. Also the program the binding tests load and attach. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

/* The program is named floor, which is also libm's floor(double): tell clang this is
 * deliberately not that function. */
#pragma clang diagnostic ignored "-Wincompatible-library-redeclaration"

SEC("xdp")
int floor(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
