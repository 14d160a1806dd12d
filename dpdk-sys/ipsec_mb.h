/* intel-ipsec-mb (Debian's libipsec-mb-dev): the library DPDK's crypto_ipsec_mb PMD is built
 * on, bound directly for its synchronous AES-GCM API. */
#include <stdint.h>
#include <stdlib.h>
#include <intel-ipsec-mb.h>
