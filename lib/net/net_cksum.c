/* SPDX-License-Identifier: Apache-2.0 */
/* Internet checksum (RFC 1071) for IPv4, ICMP and TCP, in software; the DPDK
 * glue may offload it (net_config.tx_cksum_offload, NET_RX_*_CKSUM_GOOD). */
#include "net/net_internal.h"

/* Add `len` bytes as big-endian 16-bit words to a partial sum. Only the last
 * chunk of a checksummed range may have an odd length.
 * RFC 1071 2(B): the one's complement sum does not depend on byte order, so
 * the bytes are summed as native 32-bit words into a 64-bit accumulator
 * (no carries to track for 2^32 words; compilers vectorise the loop), folded
 * to 16 bits and swapped to big-endian once at the end. On the replay
 * benchmark this took net_cksum_add from 11 % of the worker lcore to 3 %
 * (docs/benchmarks.md). */
uint32_t net_cksum_add(uint32_t sum, const uint8_t *p, size_t len)
{
    uint64_t acc = 0;
    size_t n4 = len / 4;
    for (size_t i = 0; i < n4; i++) {
        uint32_t w;
        memcpy(&w, p + 4 * i, sizeof(w));
        acc += w;
    }
    p += 4 * n4;
    len -= 4 * n4;
    if (len >= 2) {
        uint16_t w;
        memcpy(&w, p, sizeof(w));
        acc += w;
        p += 2;
        len -= 2;
    }
    if (len) { /* the high byte of a big-endian word: where it sits in memory */
        uint16_t w = 0;
        memcpy(&w, p, 1);
        acc += w;
    }
    while (acc >> 16)
        acc = (acc & 0xffff) + (acc >> 16);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    acc = (uint16_t)(acc << 8 | acc >> 8);
#endif
    acc += sum;
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
