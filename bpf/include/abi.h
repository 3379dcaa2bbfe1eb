/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The one BPF <-> userspace ABI of Ratatosk.
 *
 * Every record that crosses the ring buffer and every map key/value that
 * userspace touches is declared here and nowhere else. The BPF programs
 * include this file; the Rust types are generated from it by bindgen
 * (crates/abi/build.rs), and a test checks them against the BTF of the
 * compiled object. Change a layout here and both sides follow.
 *
 * Only fixed-width types: this header is parsed by clang for the BPF
 * target and by bindgen for the host.
 */
#ifndef RATATOSK_ABI_H
#define RATATOSK_ABI_H

#ifndef __VMLINUX_H__
#include <stdint.h>
typedef uint8_t __u8;
typedef uint16_t __u16;
typedef uint32_t __u32;
typedef uint64_t __u64;
#endif

/* Limits shared by both sides. */
enum rt_limits {
	/* Largest payload prefix one data record can carry (power of two:
	 * the BPF side masks with it). The configured capture size is
	 * clamped to this. */
	RT_MAX_CAPTURE = 8192,
	/* iovecs walked per readv/writev/recvmsg/sendmsg. */
	RT_MAX_IOV = 16,
	RT_COMM_LEN = 16,
	/* Bytes of the exec'd path kept (longer paths are cut). */
	RT_PATH_LEN = 256,
	/* Bytes of one TLS secret buffer (EVP_MAX_MD_SIZE in OpenSSL; a
	 * SHA-256 suite uses the first 32). */
	RT_TLS_SECRET_LEN = 48,
	/* OpenSSL builds whose struct layout can be learned at once
	 * (entries of the `ssl_layouts` map; the uprobe cookie indexes it). */
	RT_MAX_SSL_LAYOUTS = 64,
	/* SSL objects over non-socket BIOs waiting, per process, for the
	 * connection that carries their ClientHello (power of two). */
	RT_TLS_PENDING_SLOTS = 32,
	/* Longest request head the injection looks at (power of two). */
	RT_INJECT_HEAD_MAX = 4096,
	/* A layout offset that is not known or not used. */
	RT_SSL_NO_OFFSET = 0xffffffff,
	/* Slots of the chunk table that starts a chunked data record
	 * (RT_DATA_CHUNKS; power of two). */
	RT_MAX_CHUNKS = 16,
	/* Chunked records one syscall may produce; header-frame bytes
	 * beyond them are skipped (counted in RT_STAT_H2_HEADER_LOST). */
	RT_H2_MAX_RECORDS = 8,
};

/* What a ring-buffer record is; first byte of every record. */
enum rt_event_kind {
	RT_EV_DATA = 1,		/* bytes moved on a TCP socket */
	RT_EV_CONN_OPEN = 2,	/* accept/connect completed */
	RT_EV_CLOSE = 3,	/* close(fd) of a TCP socket in a traced process */
	RT_EV_EXEC = 4,		/* a process executed a program */
	RT_EV_EXIT = 5,		/* a thread group ended */
	RT_EV_LISTEN = 6,	/* a process started listening on a TCP port */
	RT_EV_TLS_KEYS = 7,	/* traffic secrets of a TLS connection (OpenSSL) */
	RT_EV_TLS_MEMORY_BIO = 8,	/* a process runs TLS over non-socket BIOs (once per process) */
};

/* Direction of a data record, seen from the traced process. */
enum rt_direction {
	RT_DIR_INGRESS = 0,	/* the process read these bytes */
	RT_DIR_EGRESS = 1,	/* the process wrote these bytes */
};

/* How a connection record came to be. */
enum rt_conn_origin {
	RT_ORIGIN_ACCEPT = 1,
	RT_ORIGIN_CONNECT = 2,
};

/* The syscall that produced a data record (diagnostics and tests). */
enum rt_syscall {
	RT_SYS_READ = 1,
	RT_SYS_WRITE = 2,
	RT_SYS_READV = 3,
	RT_SYS_WRITEV = 4,
	RT_SYS_RECVFROM = 5,
	RT_SYS_SENDTO = 6,
	RT_SYS_RECVMSG = 7,
	RT_SYS_SENDMSG = 8,
	RT_SYS_SENDFILE = 9,
	RT_SYS_SSL_READ = 10,	/* TLS plaintext: SSL_read / SSL_read_ex returned */
	RT_SYS_SSL_WRITE = 11,	/* TLS plaintext: SSL_write / SSL_write_ex returned */
	RT_SYS_GO_TLS_READ = 12,	/* TLS plaintext: Go (*tls.Conn).Read returned */
	RT_SYS_GO_TLS_WRITE = 13,	/* TLS plaintext: Go (*tls.Conn).Write entered */
};

/* Bits of rt_data_event.flags. */
enum rt_data_flags {
	/* Plaintext of a TLS connection, from the TLS library (the socket's
	 * ciphertext is not reported once this is known). */
	RT_DATA_TLS = 1,
	/* Ciphertext of a TLS connection whose secrets are (or will be) sent
	 * in an RT_EV_TLS_KEYS record: userspace decrypts it. */
	RT_DATA_CIPHER = 2,
	/* HTTP/2 frame walk (plaintext h2c): `data` begins with a table of
	 * RT_MAX_CHUNKS struct rt_chunk, of which the first `chunks` are
	 * used, followed by the copied bytes of each chunk in order. The
	 * record stands for the next `len` bytes of the syscall: the sum of
	 * its chunks. One syscall may give several such records (same
	 * timestamp, in order). Frame headers and the payloads of every frame
	 * type but DATA and unknown types are copied; DATA payloads are
	 * skipped. */
	RT_DATA_CHUNKS = 4,
};

/* Part of a chunked data record: `copied` bytes (in the record), then
 * `skipped` bytes moved but not captured. */
struct rt_chunk {
	__u32 copied;
	__u32 skipped;
};

/* Indexes of the per-CPU counters in the `stats` map. */
enum rt_stat {
	RT_STAT_EVENTS = 0,		/* records written to the ring buffer */
	RT_STAT_RINGBUF_FULL_DATA,	/* data records lost: ring buffer full */
	RT_STAT_RINGBUF_FULL_CTRL,	/* other records lost: ring buffer full */
	RT_STAT_TRUNCATED,		/* data records whose payload was cut at the capture size */
	RT_STAT_READ_FAULTS,		/* payload could not be read from user memory */
	RT_STAT_TARGETS_FULL,		/* forked child not added: targets map full */
	/* Uprobe program runs, one counter per probe. Entries are traps
	 * (~16-24 us each here); returns go through sys_uretprobe. */
	RT_STAT_UPROBE_SSL_READ,
	RT_STAT_UPROBE_SSL_READ_EX,
	RT_STAT_UPROBE_SSL_WRITE,
	RT_STAT_UPROBE_SSL_WRITE_EX,
	RT_STAT_URETPROBE_SSL_READ,
	RT_STAT_URETPROBE_SSL_READ_EX,
	RT_STAT_URETPROBE_SSL_WRITE,
	RT_STAT_URETPROBE_SSL_WRITE_EX,
	RT_STAT_TLS_NO_SOCKET,		/* TLS plaintext dropped: its socket was not found */
	/* Go crypto/tls probes: all are traps, the RET ones included (no
	 * uretprobes on Go: see capture.bpf.c). */
	RT_STAT_UPROBE_GO_TLS_READ,
	RT_STAT_UPROBE_GO_TLS_READ_RET,
	RT_STAT_UPROBE_GO_TLS_WRITE,
	/* OpenSSL SSL_set_bio entries (a trap each; once per connection). */
	RT_STAT_UPROBE_SSL_SET0_RBIO,
	RT_STAT_TLS_KEYS_FAULT,		/* secrets could not be read from the SSL object */
	RT_STAT_TLS_NOT_SOCKET_BIO,	/* handshake on a BIO that is not a socket */
	RT_STAT_TLS_HELLO_UNMATCHED,	/* ClientHello whose SSL object (non-socket BIO) was not found */
	RT_STAT_UPROBE_SSL_SET_BIO,	/* SSL_set_bio entries (executables; a trap each) */
	/* Socket I/O of a traced process not reported: socket hooks saw it
	 * done by a syscall they cannot read arguments from (io_uring,
	 * recvmmsg/sendmmsg, splice) */
	RT_STAT_UNDECODED_IO,
	/* HTTP/2 frame walk (socket hooks only). */
	RT_STAT_H2_CONNS,		/* sockets found speaking h2c (client preface) */
	RT_STAT_H2_FRAMES,		/* frame headers walked */
	RT_STAT_H2_RECORDS,		/* chunked records sent */
	RT_STAT_H2_HEADER_LOST,		/* header-frame payload bytes skipped: record limit */
	/* A socket direction whose walk was given up (walk or iovec limit,
	 * implausible frame header, unreadable buffer, no socket storage):
	 * it is captured as a plain prefix from then on. */
	RT_STAT_H2_DESYNC,
	/* traceparent injection (sockops + sk_msg): headers written, and
	 * requests or sockets skipped, by reason */
	RT_STAT_INJECTED,
	RT_STAT_INJECT_HAS_TRACEPARENT,	/* the head already carries one */
	RT_STAT_INJECT_PIPELINED,	/* a second request head in one send */
	RT_STAT_INJECT_SPLIT,		/* head not whole in one send: socket given up */
	RT_STAT_INJECT_NOT_HTTP,	/* not an HTTP/1 request head: socket given up */
	RT_STAT_INJECT_TUNNEL,		/* CONNECT or Upgrade: socket given up */
	RT_STAT_INJECT_CHUNKED,		/* Transfer-Encoding body: socket given up */
	RT_STAT_INJECT_TOO_LONG,	/* head over RT_INJECT_HEAD_MAX: socket given up */
	RT_STAT_INJECT_SOCKHASH_FULL,	/* socket not added: sockhash full */
	RT_STAT_INJECT_FAILED,		/* the kernel refused to insert: socket given up */
	RT_STAT_INJECT_LARGE_SEND,	/* head in a send over 32 KiB: that request not injected */
	RT_STAT_COUNT,			/* number of counters; keep last */
};

/* What rt_data_event.ctx says about its ids. */
enum rt_ctx_kind {
	RT_CTX_NONE = 0,
	/* Ingress: this read starts a server request; the kernel gave it
	 * trace_id (the incoming traceparent's, else new) and span_id, and
	 * parents the thread's outgoing calls under them. */
	RT_CTX_SERVER = 1,
	/* Egress: a traceparent with trace_id and span_id was inserted into
	 * the request this write starts; parent_id is set when the thread
	 * served one request (RT_CTX_PARENT). */
	RT_CTX_INJECTED = 2,
};

/* Addresses are in network byte order; ports in host byte order.
 * IPv4 addresses occupy the first 4 bytes of the 16. */
struct rt_tuple {
	__u8 saddr[16];	/* local address */
	__u8 daddr[16];	/* remote address */
	__u16 sport;	/* local port */
	__u16 dport;	/* remote port */
	__u16 family;	/* AF_INET or AF_INET6 */
	__u16 _pad;
};

struct rt_header {
	__u8 kind;	/* enum rt_event_kind */
	__u8 _pad[3];
	__u32 tgid;
	__u32 tid;
	__u32 _pad2;
	__u64 ts_ns;	/* CLOCK_MONOTONIC at syscall exit */
};

struct rt_data_event {
	struct rt_header hdr;
	__u64 sock_id;		/* kernel address of the struct sock: identity while it lives */
	__u64 len;		/* bytes the syscall moved (its return value) */
	/* Ingress: how long the newest received data had been waiting in the
	 * socket when the read returned, at kernel-tick resolution (from
	 * icsk_ack.lrcvtime); 0 when under two ticks or unknown. */
	__u64 queued_ns;
	__u32 fd;
	__u32 captured;		/* payload bytes that follow, <= len */
	__u8 direction;		/* enum rt_direction */
	__u8 syscall;		/* enum rt_syscall */
	__u8 flags;		/* enum rt_data_flags */
	__u8 chunks;		/* RT_DATA_CHUNKS: slots of the chunk table used */
	__u8 ctx;		/* enum rt_ctx_kind: which ids below are set */
	__u8 has_parent;	/* RT_CTX_INJECTED: parent_id is set */
	__u8 _pad[2];
	struct rt_tuple tuple;
	__u8 trace_id[16];
	__u8 span_id[8];
	__u8 parent_id[8];
	__u8 data[RT_MAX_CAPTURE];	/* only `captured` bytes are sent */
};

struct rt_conn_event {
	struct rt_header hdr;
	__u64 sock_id;
	__u32 fd;
	__u8 origin;	/* enum rt_conn_origin */
	__u8 _pad[3];
	struct rt_tuple tuple;
};

struct rt_close_event {
	struct rt_header hdr;
	__u32 fd;
	__u32 _pad;
	__u64 sock_id;	/* the socket that closed */
};

struct rt_proc_event {
	struct rt_header hdr;	/* kind: EXEC or EXIT */
	__u32 ppid;
	__u32 _pad;
	/* Kept in the record because a short-lived process (curl) may be
	 * gone from /proc before userspace reads the record. */
	__u8 comm[RT_COMM_LEN];
	__u8 filename[RT_PATH_LEN];	/* EXEC: the path given to execve, NUL-terminated */
};

struct rt_listen_event {
	struct rt_header hdr;
	__u16 port;
	__u16 family;
	__u32 fd;
};

/* Traffic secrets of one TLS connection, read from the SSL object once
 * they are set (userspace decrypts the RT_DATA_CIPHER records with them).
 * Zero where the version does not use them. */
struct rt_tls_keys_event {
	struct rt_header hdr;
	__u64 sock_id;
	__u32 fd;
	__u32 version;	/* SSL_version(): 0x0303 TLS 1.2, 0x0304 TLS 1.3 */
	__u8 client_secret[RT_TLS_SECRET_LEN];	/* TLS 1.3 client_application_traffic_secret_0 */
	__u8 server_secret[RT_TLS_SECRET_LEN];	/* TLS 1.3 server_application_traffic_secret_0 */
	__u8 master_secret[RT_TLS_SECRET_LEN];	/* TLS 1.2 master secret */
};

struct rt_tls_memory_bio_event {
	struct rt_header hdr;
	__u32 layout;	/* index in `ssl_layouts`: which library */
	__u32 _pad;
};

/* Where OpenSSL keeps what the connection probe (SSL_set0_rbio) reads, learned by running
 * the very library (crates/sslcal). Byte offsets from the pointer named
 * first. Value of the `ssl_layouts` map. */
struct rt_ssl_layout {
	__u32 ssl_rbio;		/* SSL -> BIO *rbio */
	__u32 bio_method;	/* BIO -> const BIO_METHOD *method */
	__u32 bio_method_type;	/* BIO_METHOD -> int type */
	__u32 bio_num;		/* BIO -> int num (a socket BIO's fd) */
	__u32 bio_type_socket;	/* BIO_TYPE_SOCKET */
	__u32 ssl_version;	/* SSL -> int version */
	__u32 ssl_client_app_secret;	/* SSL -> client_app_traffic_secret[] */
	__u32 ssl_server_app_secret;	/* SSL -> server_app_traffic_secret[] */
	__u32 ssl_session;	/* SSL -> SSL_SESSION *session */
	__u32 session_master_key;	/* SSL_SESSION -> master_key[] */
	__u32 valid;		/* 1 once userspace filled the entry */
	/* SSL -> s3.client_random[32], the ClientHello random; through the
	 * pointer at client_random_via unless that is RT_SSL_NO_OFFSET
	 * (1.1.1: SSL3_STATE *s3). client_random is RT_SSL_NO_OFFSET when
	 * unknown: SSL objects over other BIOs are then not matched. */
	__u32 client_random_via;
	__u32 client_random;
	__u32 _pad;
};

/* Value of the `targets` map (key: tgid). */
struct rt_target {
	__u8 inherited;	/* added in the kernel at fork, not by userspace */
	__u8 _pad[7];
};

#endif /* RATATOSK_ABI_H */
