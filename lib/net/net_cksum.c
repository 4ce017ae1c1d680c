/* SPDX-License-Identifier: Apache-2.0 */
/* Internet checksum (RFC 1071) for IPv4, ICMP and TCP, in software; the DPDK
 * glue may offload it (net_config.tx_cksum_offload, NET_RX_*_CKSUM_GOOD). */
#include "net/net_internal.h"

/* Add `len` bytes as big-endian 16-bit words to a partial sum. Only the last
 * chunk of a checksummed range may have an odd length. */
uint32_t net_cksum_add(uint32_t sum, const uint8_t *p, size_t len)
{
    uint64_t acc = sum;
    while (len >= 2) {
        acc += (uint32_t)(p[0] << 8 | p[1]);
        p += 2;
        len -= 2;
    }
    if (len)
        acc += (uint32_t)p[0] << 8;
    while (acc >> 32)
        acc = (acc & 0xffffffffu) + (acc >> 32);
    acc = (acc & 0xffff) + (acc >> 16);
    return (uint32_t)acc;
}

/* Fold to 16 bits and complement: the value to store, or 0 when a range
 * that includes its checksum field verifies. */
uint16_t net_cksum_fold(uint32_t sum)
{
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)~sum;
}

/* RFC 9293 3.1: the TCP pseudo header. */
uint32_t net_cksum_pseudo(uint32_t src, uint32_t dst, uint8_t proto, uint16_t len)
{
    uint64_t acc = (src >> 16) + (src & 0xffff) + (dst >> 16) + (dst & 0xffff) + proto + len;
    acc = (acc & 0xffff) + (acc >> 16);
    return (uint32_t)acc;
}
