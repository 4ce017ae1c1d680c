/* SPDX-License-Identifier: Apache-2.0 */
/* Per-lcore counters of the userspace stack: one X-macro list of drop
 * reasons and one of event counters, so the enum, the metric label strings
 * and /metrics never drift. Plain stores by the owning lcore; a scraper on
 * another thread reads them tolerantly (torn reads of a counter are not
 * possible on 64-bit targets, consistency across counters is not promised). */
#ifndef OTLP_NET_STATS_H
#define OTLP_NET_STATS_H

#include <stdint.h>

/* Every reason a received or generated frame is dropped: X(name, label). */
#define NET_DROP_REASONS(X)                                                                        \
    X(ETH_SHORT, "eth_short")             /* shorter than an Ethernet header */                    \
    X(ETH_DST, "eth_dst")                 /* not our MAC, not broadcast */                         \
    X(ETH_TYPE, "eth_type")               /* neither IPv4 nor ARP (VLAN tags included) */          \
    X(ARP_SHORT, "arp_short")             /* truncated ARP packet */                               \
    X(ARP_FORMAT, "arp_format")           /* not Ethernet/IPv4 ARP, or unknown opcode */           \
    X(ARP_NOT_US, "arp_not_us")           /* request for another address, reply not for us */      \
    X(IP_SHORT, "ip_short")               /* truncated IPv4 header */                              \
    X(IP_VERSION, "ip_version")           /* version != 4 */                                       \
    X(IP_HDR_LEN, "ip_hdr_len")           /* IHL < 5 or beyond the packet */                       \
    X(IP_TOTAL_LEN, "ip_total_len")       /* total length below IHL or beyond the frame */         \
    X(IP_CHECKSUM, "ip_checksum")         /* header checksum wrong */                              \
    X(IP_FRAGMENT, "ip_fragment")         /* MF set or offset != 0: no reassembly */               \
    X(IP_DST, "ip_dst")                   /* not our address */                                    \
    X(IP_SRC, "ip_src")                   /* source 0, broadcast, multicast or ours */             \
    X(IP_PROTO, "ip_proto")               /* neither ICMP nor TCP */                               \
    X(ICMP_SHORT, "icmp_short")           /* truncated ICMP header */                              \
    X(ICMP_CHECKSUM, "icmp_checksum")     /* ICMP checksum wrong */                                \
    X(ICMP_TYPE, "icmp_type")             /* anything but echo request */                          \
    X(TCP_SHORT, "tcp_short")             /* truncated TCP header */                               \
    X(TCP_HDR_LEN, "tcp_hdr_len")         /* data offset < 5 or beyond the segment */              \
    X(TCP_CHECKSUM, "tcp_checksum")       /* TCP checksum wrong */                                 \
    X(TCP_FLAGS, "tcp_flags")             /* SYN with FIN or RST, or no flag a state accepts */    \
    X(TCP_NO_LISTENER, "tcp_no_listener") /* port not listened on: RST sent */                     \
    X(TCP_NO_CONN, "tcp_no_conn")         /* no connection and no valid cookie: RST sent */        \
    X(TCP_NO_CONN_RST, "tcp_no_conn_rst") /* RST for no connection */                              \
    X(TCP_TABLE_FULL, "tcp_table_full")   /* valid cookie, connection table full: RST sent */      \
    X(TCP_REFUSED, "tcp_refused")         /* the application refused the connection */             \
    X(TCP_OUT_OF_WINDOW, "tcp_out_of_window") /* sequence not acceptable: ACK sent */              \
    X(TCP_DUPLICATE, "tcp_duplicate") /* entirely old segment (retransmission): ACK sent */        \
    X(TCP_RST_OUT_OF_WINDOW, "tcp_rst_out_of_window") /* RFC 5961 3.2: RST ignored */              \
    X(TCP_RST_CHALLENGED, "tcp_rst_challenged") /* RFC 5961 3.2: in-window RST, challenge ACK */   \
    X(TCP_SYN_CHALLENGED, "tcp_syn_challenged") /* RFC 5961 4.2: SYN on a connection */            \
    X(TCP_NO_ACK, "tcp_no_ack")                 /* segment without ACK on a connection */          \
    X(TCP_ACK_INVALID, "tcp_ack_invalid")       /* ACK above SND.MAX or far below SND.UNA */       \
    X(TCP_OOO_FULL, "tcp_ooo_full")       /* out-of-order data beyond the reassembly buffer */     \
    X(TCP_OOO_NO_BUF, "tcp_ooo_no_buf")   /* reassembly buffer pool exhausted */                   \
    X(TCP_AFTER_CLOSE, "tcp_after_close") /* data after the app closed: acked, discarded */        \
    X(TCP_AFTER_FIN, "tcp_after_fin")     /* data beyond the peer's FIN */                         \
    X(TX_ALLOC, "tx_alloc")               /* net_tx_ops.alloc returned NULL */

enum net_drop_reason {
#define X(n, l) NET_DROP_##n,
    NET_DROP_REASONS(X)
#undef X
        NET_DROP_COUNT
};

/* Event counters (not drops): X(name, metric suffix). */
#define NET_COUNTERS(X)                                                                            \
    X(rx_frames, "rx_frames")                                                                      \
    X(tx_frames, "tx_frames")                                                                      \
    X(arp_rx, "arp_rx") /* ARP packets accepted */                                                 \
    X(arp_replies_tx, "arp_replies_tx")                                                            \
    X(arp_requests_tx, "arp_requests_tx")                                                          \
    X(icmp_echo_replies, "icmp_echo_replies")                                                      \
    X(tcp_syn_rx, "tcp_syn_rx")                                                                    \
    X(tcp_syncookies_tx, "tcp_syncookies_tx") /* SYN-ACKs sent (all are cookies) */                \
    X(tcp_accepted, "tcp_accepted")                                                                \
    X(tcp_closed, "tcp_closed")       /* connections released, any reason */                       \
    X(tcp_resets_rx, "tcp_resets_rx") /* valid RSTs that aborted a connection */                   \
    X(tcp_resets_tx, "tcp_resets_tx")                                                              \
    X(tcp_challenge_acks, "tcp_challenge_acks")                                                    \
    X(tcp_reopened, "tcp_reopened") /* SYN that reopened a 4-tuple (TIME_WAIT; replay_isn: any) */ \
    X(tcp_retransmits, "tcp_retransmits") /* RTO expiries that resent data or FIN */               \
    X(tcp_rto_aborts, "tcp_rto_aborts")   /* retry limit reached */                                \
    X(tcp_keepalive_aborts, "tcp_keepalive_aborts")                                                \
    X(tcp_fin_wait2_timeouts, "tcp_fin_wait2_timeouts")                                            \
    X(tcp_ooo_segments, "tcp_ooo_segments")                                                        \
    X(tcp_dup_bytes, "tcp_dup_bytes") /* received bytes already received (trimmed) */              \
    X(tcp_rx_bytes, "tcp_rx_bytes")   /* in-order payload bytes delivered */                       \
    X(tcp_tx_bytes, "tcp_tx_bytes")   /* payload bytes sent, retransmissions included */           \
    X(tcp_active, "tcp_active")       /* gauge: connections in the table */

struct net_stats {
    uint64_t drops[NET_DROP_COUNT];
#define X(n, l) uint64_t n;
    NET_COUNTERS(X)
#undef X
};

/* Metric label of a drop reason ("eth_short", ...); NULL when out of range. */
const char *net_drop_reason_name(enum net_drop_reason r);

#endif
