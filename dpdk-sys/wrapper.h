/* The DPDK headers that dpdk-sys binds. bindgen reads this file; with wrap_static_fns it also
 * writes a C file that #includes it and wraps every static inline function (rte_eth_rx_burst,
 * rte_pktmbuf_alloc, rte_rdtsc, ...) in an exported symbol; build.rs compiles that with cc. */
#include <rte_config.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_launch.h>
#include <rte_cycles.h>
#include <rte_dev.h>
#include <rte_mempool.h>
#include <rte_mbuf.h>
#include <rte_ring.h>
#include <rte_ether.h>
#include <rte_ip.h>
#include <rte_ethdev.h>

/* rte_errno is a per-lcore TLS variable (per_lcore__rte_errno) that bindgen cannot bind; these
 * static inline accessors are wrapped into real functions like every other static inline. */
static inline int rte_sys_errno(void) { return rte_errno; }
static inline void rte_sys_set_errno(int e) { rte_errno = e; }

/* rte_pktmbuf_mtod is a macro; this is its function form (address of the first data byte). */
static inline void *rte_sys_pktmbuf_mtod(struct rte_mbuf *m) { return rte_pktmbuf_mtod(m, void *); }
