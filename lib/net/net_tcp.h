/* SPDX-License-Identifier: Apache-2.0 */
/* Server-side TCP (RFC 9293) of the userspace stack: what the application
 * (the DPDK transport feeding lib/receiver) sees of a connection. Segments
 * arrive through net_stack_input(); the application gets in-order bytes via
 * net_app_ops.on_data and answers with net_tcp_send(). */
#ifndef OTLP_NET_TCP_H
#define OTLP_NET_TCP_H

#include <stddef.h>
#include <stdint.h>

struct net_tcp_conn;

/* Connection states we use. No LISTEN / SYN-RECEIVED per connection: the
 * handshake is stateless (SYN cookies), a connection exists from the ACK
 * that completes it. */
#define NET_TCP_STATES(X)                                                                          \
    X(CLOSED, "closed")                                                                            \
    X(ESTABLISHED, "established")                                                                  \
    X(CLOSE_WAIT, "close_wait")                                                                    \
    X(LAST_ACK, "last_ack")                                                                        \
    X(FIN_WAIT_1, "fin_wait_1")                                                                    \
    X(FIN_WAIT_2, "fin_wait_2")                                                                    \
    X(CLOSING, "closing")                                                                          \
    X(TIME_WAIT, "time_wait")

enum net_tcp_state {
#define X(n, l) NET_TCP_##n,
    NET_TCP_STATES(X)
#undef X
};

/* Why the stack ended a connection the application had not closed. */
#define NET_TCP_CLOSE_REASONS(X)                                                                   \
    X(RESET, "reset")           /* valid RST from the peer */                                      \
    X(RETRANSMIT, "retransmit") /* retransmission limit reached; RST sent */                       \
    X(KEEPALIVE, "keepalive")   /* keepalive probes unanswered; RST sent */                        \
    X(DESTROY, "destroy")       /* net_stack_destroy() */                                       \
    X(REPLACED, "replaced")     /* a new SYN took the 4-tuple (net_config.replay_isn) */

enum net_tcp_close_reason {
#define X(n, l) NET_TCP_CLOSE_##n,
    NET_TCP_CLOSE_REASONS(X)
#undef X
};

/*
 * The application's callbacks. All run on the stack's lcore from inside
 * net_stack_input() / net_stack_timers(); they may call net_tcp_send(),
 * net_tcp_close(), net_tcp_abort() and net_tcp_set_rcv_space() on any
 * connection, including the one being reported.
 *
 * on_accept(ctx, conn): a handshake completed. Return the application's
 *   state for it, or NULL to refuse (the stack answers RST).
 * on_data(ctx, conn, app_conn, data, len): in-order bytes; data is borrowed
 *   until return. len == 0 (data NULL) means the peer sent FIN: no more
 *   data will come; the application answers what it must and calls
 *   net_tcp_close(). Each delivered byte is taken from the connection's
 *   receive budget (see net_tcp_set_rcv_space()).
 * on_closed(ctx, conn, app_conn, reason): the stack ended a connection the
 *   application had not closed; free app_conn. Not called after the
 *   application's own net_tcp_close() or net_tcp_abort().
 * on_timeout(ctx, conn, app_conn): the deadline set with
 *   net_tcp_set_app_deadline() passed. Optional (NULL).
 */
struct net_app_ops {
    void *(*on_accept)(void *ctx, struct net_tcp_conn *conn);
    void (*on_data)(void *ctx, struct net_tcp_conn *conn, void *app_conn, const uint8_t *data,
                    size_t len);
    void (*on_closed)(void *ctx, struct net_tcp_conn *conn, void *app_conn,
                      enum net_tcp_close_reason reason);
    void (*on_timeout)(void *ctx, struct net_tcp_conn *conn, void *app_conn);
};

/*
 * Queue `len` bytes for sending; copies them into the connection's send
 * buffer (net_config.snd_buf_bytes), where they stay until acknowledged,
 * and transmits what the send and congestion windows allow. All or nothing.
 * Borrows data until return.
 * Returns 0, or
 *   -ENOBUFS   the send buffer cannot take len bytes now (nothing queued),
 *   -EPIPE     the connection no longer sends (closed by us, reset),
 *   -EINVAL    conn NULL, or data NULL with len > 0.
 */
int net_tcp_send(struct net_tcp_conn *c, const void *data, size_t len);

/*
 * Close: send FIN after the queued data (graceful). From this call on the
 * application must not use `c` again and gets no more callbacks for it;
 * data the peer still sends is acknowledged and discarded (counted as
 * NET_DROP_TCP_AFTER_CLOSE) instead of answered with RST, so a reset cannot
 * destroy a response the peer has not read yet. The stack finishes the
 * close (FIN_WAIT_* -> TIME_WAIT, or LAST_ACK) on its own. NULL is a no-op.
 */
void net_tcp_close(struct net_tcp_conn *c);

/* Abort: send RST and release the connection now. Queued data is lost. The
 * application must not use `c` afterwards. NULL is a no-op. */
void net_tcp_abort(struct net_tcp_conn *c);

/*
 * Set the connection's receive budget: how many more bytes the application
 * can take now. Delivery of data consumes it; the advertised window is the
 * budget (never shrinking below what was already advertised, RFC 9293
 * 3.8.6.2.2), so a budget of 0 closes the window once the peer has used it.
 * Raising it by at least min(MSS, initial budget / 2) sends a window update.
 * An application that consumes everything at once sets it back to its full
 * budget at the end of each on_data. Starts at net_config.rcv_space_bytes.
 */
void net_tcp_set_rcv_space(struct net_tcp_conn *c, uint32_t bytes);

/* Call on_timeout once when now_us reaches at_us (0 cancels). For request
 * and idle timeouts of the application. */
void net_tcp_set_app_deadline(struct net_tcp_conn *c, uint64_t at_us);

enum net_tcp_state net_tcp_conn_state(const struct net_tcp_conn *c);
/* Peer address and port, host byte order. */
void net_tcp_conn_peer(const struct net_tcp_conn *c, uint32_t *ip, uint16_t *port);
uint16_t net_tcp_conn_local_port(const struct net_tcp_conn *c);
/* Bytes queued but not yet acknowledged, and free space of the send buffer. */
size_t net_tcp_conn_snd_queued(const struct net_tcp_conn *c);
size_t net_tcp_conn_snd_free(const struct net_tcp_conn *c);
/* Label of a state or close reason ("established", "reset"). */
const char *net_tcp_state_name(enum net_tcp_state st);
const char *net_tcp_close_reason_name(enum net_tcp_close_reason r);

#endif
