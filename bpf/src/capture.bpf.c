// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
/*
 * Kernel capture: socket I/O of the traced processes, plus sched
 * tracepoints for process discovery, plus uprobes on OpenSSL and Go
 * crypto/tls for TLS. No kprobes, no fentry.
 *
 * Socket I/O is hooked one of three ways (userspace loads one set):
 * - socket (default): sock:sock_recv_length/sock_send_length inside
 *   sock_recvmsg/sock_sendmsg and sock:inet_sock_set_state, so only
 *   socket I/O and TCP state changes run BPF and no syscall tracepoint
 *   slows every syscall of the host down;
 * - raw: one tp_btf program on raw_syscalls:sys_exit. At syscall exit the
 *   return value says how many bytes moved and the arguments are still in
 *   the saved user registers, so one hit per syscall is enough (~120-180
 *   ns, against ~290 ns for a per-syscall enter+exit tracepoint pair).
 *   Every syscall on the host pays the program entry plus a switch on the
 *   syscall number; only the socket syscalls pay the target lookup;
 * - per-syscall: one syscalls:sys_exit_* tracepoint per socket syscall.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "abi.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* x86_64 syscall numbers (arch/x86/entry/syscalls/syscall_64.tbl). */
enum {
	NR_read = 0,
	NR_write = 1,
	NR_close = 3,
	NR_readv = 19,
	NR_writev = 20,
	NR_sendfile = 40,
	NR_connect = 42,
	NR_accept = 43,
	NR_sendto = 44,
	NR_recvfrom = 45,
	NR_sendmsg = 46,
	NR_recvmsg = 47,
	NR_listen = 50,
	NR_accept4 = 288,
};

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define SOCK_STREAM 1
#define S_IFMT 00170000
#define S_IFSOCK 0140000
#define EINPROGRESS 115
#define MSG_PEEK 2

/* Kernel tick rate, from the kernel config (0 if libbpf cannot read it:
 * then queue times are not reported). */
extern unsigned int CONFIG_HZ __kconfig __weak;

/* Set by userspace before load. */
const volatile __u32 agent_tgid = 0;
/* No selector given: trace every process but the agent. */
const volatile bool trace_all = false;
/* Report listen() from every process (an --open-port selector exists). */
const volatile bool report_listen = false;
/* Payload bytes copied per data record (<= RT_MAX_CAPTURE). */
const volatile __u32 capture_bytes = 1024;
/* Exec'd processes are traced until userspace, which sees the exec record
 * before any of their data, decides (an --exe-path selector exists). */
const volatile bool trace_new_execs = false;
/* Wake the reader only once this much data is waiting; it also polls. */
const volatile __u64 wakeup_bytes = 65536;
/* TLS plaintext capture is on: syscall exits look for SSL calls in
 * progress and skip the ciphertext of known TLS sockets. */
const volatile bool tls_capture = false;
/* Walk HTTP/2 frames on sockets that start with the client preface (socket
 * hooks only). Off: HTTP/2 is captured as a prefix like anything else. */
const volatile bool h2_walk = true;
/* traceparent injection is on (sockops + sk_msg attached): client
 * sockets are marked at connect, server requests get ids. */
const volatile bool inject = false;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20); /* resized by userspace before load */
} events SEC(".maps");

/* tgid -> struct rt_target: the processes being traced. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct rt_target);
} targets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, RT_STAT_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

/* Staging area for a data record: too big for the 512-byte stack, and
 * bpf_ringbuf_output() then sends only the bytes that were captured. The
 * spill lets the verifier bound offset and length of an iovec copy
 * independently (each < RT_MAX_CAPTURE) without proving their sum. */
struct scratch_buf {
	struct rt_data_event ev;
	__u8 spill[RT_MAX_CAPTURE];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch_buf);
} scratch SEC(".maps");

static __always_inline void stat_add(__u32 idx, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &idx);
	if (v)
		*v += n;
}

static __always_inline void stat_inc(__u32 idx)
{
	stat_add(idx, 1);
}

/* Syscall argument N from the saved user registers (x86-64: rdi, rsi,
 * rdx, r10). `regs` is always BTF-typed here (tp_btf argument or
 * bpf_task_pt_regs()), so these are plain loads; PT_REGS_PARMn_CORE_SYSCALL
 * would cost a bpf_probe_read_kernel() call each. */
#define SC_ARG1(regs) ((regs)->di)
#define SC_ARG2(regs) ((regs)->si)
#define SC_ARG3(regs) ((regs)->dx)
#define SC_ARG4(regs) ((regs)->r10)

static __always_inline bool is_target(__u32 tgid)
{
	if (tgid == agent_tgid)
		return false;
	if (trace_all)
		return true;
	return bpf_map_lookup_elem(&targets, &tgid) != NULL;
}

static __always_inline __u64 rb_flags(void)
{
	return bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= wakeup_bytes ? BPF_RB_FORCE_WAKEUP
									       : BPF_RB_NO_WAKEUP;
}

static __always_inline void fill_header(struct rt_header *h, __u8 kind, __u64 pid_tgid)
{
	h->kind = kind;
	h->tgid = pid_tgid >> 32;
	h->tid = (__u32)pid_tgid;
	h->ts_ns = bpf_ktime_get_ns();
}

/* An IPv4 or IPv6 TCP socket. */
static __always_inline bool is_tcp(struct sock *sk)
{
	__u16 family = sk->__sk_common.skc_family;
	if (family != AF_INET && family != AF_INET6)
		return false;
	return sk->sk_protocol == IPPROTO_TCP && sk->sk_type == SOCK_STREAM;
}

/* The TCP socket behind a file descriptor of the current process, or NULL
 * when the descriptor is anything else (file, pipe, UDP, unix socket).
 *
 * Direct loads through BTF-typed pointers (tp_btf lets the verifier follow
 * them, with fault handling) instead of one bpf_probe_read_kernel() call
 * per field: this walk runs on every socket syscall of a traced process. */
static __always_inline struct sock *tcp_sock_of_fd(__u32 fd)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct fdtable *fdt = task->files->fdt;
	struct file *file = NULL;

	if (fd >= fdt->max_fds)
		return NULL;
	/* The array index is variable: one read for the slot. */
	if (bpf_probe_read_kernel(&file, sizeof(file), &fdt->fd[fd]) || !file)
		return NULL;
	file = bpf_core_cast(file, struct file);
	if ((file->f_inode->i_mode & S_IFMT) != S_IFSOCK)
		return NULL;
	struct socket *sock = bpf_core_cast(file->private_data, struct socket);
	struct sock *sk = sock->sk;
	if (!sk || !is_tcp(sk))
		return NULL;
	return sk;
}

static __always_inline void read_tuple(struct sock *sk, struct rt_tuple *t)
{
	struct sock_common *c = &sk->__sk_common;

	t->family = c->skc_family;
	t->sport = c->skc_num;
	t->dport = bpf_ntohs(c->skc_dport);
	if (t->family == AF_INET) {
		__u32 s = c->skc_rcv_saddr;
		__u32 d = c->skc_daddr;
		__builtin_memcpy(t->saddr, &s, 4);
		__builtin_memcpy(t->daddr, &d, 4);
	} else {
		BPF_CORE_READ_INTO(&t->saddr, c, skc_v6_rcv_saddr.in6_u.u6_addr8);
		BPF_CORE_READ_INTO(&t->daddr, c, skc_v6_daddr.in6_u.u6_addr8);
	}
}

/* (tgid << 32 | fd) of sockets seen in traced processes, so that close()
 * reports only sockets: servers close files (nginx) or pipes per request,
 * and a lookup is far cheaper than a record. LRU: a lost entry costs one
 * missed close record, which userspace's connection bound absorbs. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, __u64);
} sock_fds SEC(".maps");

static __always_inline void remember_fd(__u64 pid_tgid, __u32 fd, struct sock *sk)
{
	__u64 key = (pid_tgid & 0xffffffff00000000ULL) | fd;
	__u64 *known = bpf_map_lookup_elem(&sock_fds, &key);
	__u64 val = (__u64)sk;

	if (!known || *known != val)
		bpf_map_update_elem(&sock_fds, &key, &val, BPF_ANY);
}

/* TLS (OpenSSL) plaintext.
 *
 * SSL_read/SSL_write and their _ex forms are probed at entry and return.
 * The entry saves the call (SSL*, buffer, _ex length pointer) per thread;
 * socket syscalls exiting while the call is in progress are its ciphertext:
 * they tell the socket (SSL* -> socket is cached) and are not reported;
 * the return reports the plaintext with the exact length the function
 * returned. The return costs no extra trap on this kernel (sys_uretprobe);
 * entries are the expensive part (see ARCHITECTURE.md). */
struct tls_call {
	__u64 ssl;
	__u64 buf;
	__u64 len_ptr;	/* SSL_read_ex/SSL_write_ex: size_t *; else 0 */
	__u64 sock;	/* learned from a socket syscall inside the call */
	__u32 fd;
	__u32 _pad;
};

/* pid_tgid -> the SSL call the thread is in. LRU: a call whose return
 * never comes (thread killed) ages out. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct tls_call);
} tls_calls SEC(".maps");

struct ssl_key {
	__u32 tgid;
	__u32 _pad;
	__u64 ssl;
};

struct sock_fd {
	__u64 sock;
	__u32 fd;
	__u32 _pad;
};

/* (tgid, SSL*) -> socket: later calls that do no syscall (data OpenSSL
 * buffered) still know their connection. Checked against the fd table
 * before use, since an SSL* may be freed and reused. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536); /* sized with sock_fds by userspace */
	__type(key, struct ssl_key);
	__type(value, struct sock_fd);
} ssl_socks SEC(".maps");

/* Sockets known to carry TLS: their ciphertext is not reported. Removed
 * at close (the struct sock address is then reused). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536); /* sized with sock_fds by userspace */
	__type(key, __u64);
	__type(value, __u8);
} tls_socks SEC(".maps");

/* Processes in which a TLS uprobe has run (tgid -> 1): only their sockets
 * can be in tls_calls, tls_socks or tls_keysocks, every entry of which is
 * made in such a probe. A process without TLS (nginx serving plain HTTP
 * has libssl loaded all the same) skips those three lookups per record.
 * Inherited at fork (a pre-forked worker keeps its parent's SSL objects),
 * removed at exit; resized with `targets` at load. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, __u8);
} tls_procs SEC(".maps");

static __always_inline void tls_proc_mark(__u32 tgid)
{
	if (!bpf_map_lookup_elem(&tls_procs, &tgid)) {
		__u8 one = 1;
		bpf_map_update_elem(&tls_procs, &tgid, &one, BPF_ANY);
	}
}

/* pid_tgid -> the last socket the thread read TLS records from outside an
 * SSL call: libraries that feed OpenSSL through memory BIOs (Node) read the
 * ciphertext before SSL_read, so the call itself sees no syscall. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct sock_fd);
} tls_last SEC(".maps");

/* TLS (OpenSSL) by decryption: SSL_set0_rbio is probed at entry (one trap
 * per connection, none per request). It finds the socket behind the read
 * BIO and registers it here with the SSL object; from then on the
 * socket's syscalls report their ciphertext (RT_DATA_CIPHER) and, once the
 * handshake has set them, the traffic secrets are read from the SSL object
 * at the offsets learned for that library build (ssl_layouts) and sent
 * once. Userspace decrypts. */
struct tls_keysock {
	__u64 ssl;	/* 0 while a ClientHello's SSL object is looked for */
	__u64 stale;	/* first bytes of the TLS 1.3 client secret when the BIO
			 * was set: a reused SSL object (SSL_clear) still holds
			 * the previous connection's */
	__u32 layout;
	__u8 sent;
	__u8 tries;	/* lookups of the SSL object so far (ssl == 0) */
	__u8 _pad[2];
	__u64 random[4];	/* the ClientHello random (ssl == 0) */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, RT_MAX_SSL_LAYOUTS);
	__type(key, __u32);
	__type(value, struct rt_ssl_layout);
} ssl_layouts SEC(".maps");

/* struct sock -> its SSL object. Removed at close (the address is reused). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536); /* sized with sock_fds by userspace */
	__type(key, __u64);
	__type(value, struct tls_keysock);
} tls_keysocks SEC(".maps");

/* SSL objects whose BIO is not a socket (asyncio's memory BIOs, curl's
 * own BIO method), per process, until the connection that carries their
 * handshake is found: the socket whose ClientHello has the random the
 * object holds (read at the offsets of its layout). A ring of slots: more
 * handshakes in progress at once than slots overwrite the oldest, whose
 * connection is then counted as unmatched. The first entry of a process
 * reports it (RT_EV_TLS_MEMORY_BIO). */
struct tls_pending {
	__u64 ssl[RT_TLS_PENDING_SLOTS];
	__u64 stale[RT_TLS_PENDING_SLOTS];
	__u32 layout[RT_TLS_PENDING_SLOTS];
	__u32 next;
	__u32 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct tls_pending);
} tls_pending SEC(".maps");

/* A zeroed tls_pending to create entries from (too big for the stack). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tls_pending);
} tls_pending_zero SEC(".maps");

/* Lookups of a ClientHello's SSL object before giving up: the server's
 * finds it at its next syscall on the socket (the ServerHello), the
 * client's at once. */
#define TLS_BIND_TRIES 8

/* Registers `ks` for `sock`, unless the socket already belongs to that SSL
 * object (whose entry keeps its sent flag and stale snapshot). */
static __always_inline void keysock_set(__u64 sock, struct tls_keysock *ks)
{
	struct tls_keysock *old = bpf_map_lookup_elem(&tls_keysocks, &sock);
	if (!old || old->ssl != ks->ssl)
		bpf_map_update_elem(&tls_keysocks, &sock, ks, BPF_ANY);
}

static __always_inline bool nonzero48(const __u64 *v)
{
	return (v[0] | v[1] | v[2] | v[3] | v[4] | v[5]) != 0;
}

/* Sends the connection's secrets if the handshake has set them. */
static __always_inline void tls_try_keys(struct tls_keysock *ks, __u64 sock, __u32 fd, __u64 pid_tgid)
{
	__u32 idx = ks->layout;
	struct rt_ssl_layout *l = bpf_map_lookup_elem(&ssl_layouts, &idx);
	if (!l || !l->valid)
		return;
	__u32 zero = 0;
	struct scratch_buf *buf = bpf_map_lookup_elem(&scratch, &zero);
	if (!buf)
		return;
	/* Staged in the scratch spill (the data record is built afterwards). */
	struct rt_tls_keys_event *k = (struct rt_tls_keys_event *)buf->spill;
	__builtin_memset(k, 0, sizeof(*k));
	__s32 version = 0;
	if (bpf_probe_read_user(&version, sizeof(version), (void *)(ks->ssl + l->ssl_version)))
		goto fault;
	if (version == 0x0304) {
		if (bpf_probe_read_user(k->client_secret, RT_TLS_SECRET_LEN,
					(void *)(ks->ssl + l->ssl_client_app_secret)) ||
		    bpf_probe_read_user(k->server_secret, RT_TLS_SECRET_LEN,
					(void *)(ks->ssl + l->ssl_server_app_secret)))
			goto fault;
		if (!nonzero48((__u64 *)k->client_secret) || !nonzero48((__u64 *)k->server_secret) ||
		    *(__u64 *)k->client_secret == ks->stale)
			return; /* not derived yet */
	} else if (version >= 0x0300 && version <= 0x0303) {
		__u64 session = 0;
		if (bpf_probe_read_user(&session, sizeof(session), (void *)(ks->ssl + l->ssl_session)))
			goto fault;
		if (!session)
			return;
		if (bpf_probe_read_user(k->master_secret, RT_TLS_SECRET_LEN,
					(void *)(session + l->session_master_key)))
			goto fault;
		if (!nonzero48((__u64 *)k->master_secret))
			return;
	} else {
		return; /* not negotiated yet */
	}
	fill_header(&k->hdr, RT_EV_TLS_KEYS, pid_tgid);
	k->sock_id = sock;
	k->fd = fd;
	k->version = version;
	if (bpf_ringbuf_output(&events, k, sizeof(*k), BPF_RB_FORCE_WAKEUP)) {
		stat_inc(RT_STAT_RINGBUF_FULL_CTRL);
		return; /* tried again at the next record */
	}
	stat_inc(RT_STAT_EVENTS);
	ks->sent = 1;
	return;
fault:
	stat_inc(RT_STAT_TLS_KEYS_FAULT);
}

/* Finds, among the process's pending SSL objects, the one whose client
 * random is this socket's ClientHello's, and binds the socket to it. */
static __always_inline bool tls_bind(struct tls_keysock *ks, __u32 tgid)
{
	struct tls_pending *p = bpf_map_lookup_elem(&tls_pending, &tgid);
	if (!p)
		return false;
	for (__u32 i = 0; i < RT_TLS_PENDING_SLOTS; i++) {
		__u64 ssl = p->ssl[i];
		if (!ssl)
			continue;
		__u32 idx = p->layout[i];
		struct rt_ssl_layout *l = bpf_map_lookup_elem(&ssl_layouts, &idx);
		if (!l || !l->valid || l->client_random == RT_SSL_NO_OFFSET)
			continue;
		__u64 base = ssl;
		if (l->client_random_via != RT_SSL_NO_OFFSET &&
		    bpf_probe_read_user(&base, sizeof(base), (void *)(ssl + l->client_random_via)))
			continue;
		__u64 r[4];
		if (bpf_probe_read_user(r, sizeof(r), (void *)(base + l->client_random)))
			continue;
		if (r[0] != ks->random[0] || r[1] != ks->random[1] || r[2] != ks->random[2] ||
		    r[3] != ks->random[3])
			continue;
		ks->ssl = ssl;
		ks->layout = idx;
		ks->stale = p->stale[i];
		p->ssl[i] = 0;
		return true;
	}
	return false;
}

/* A TLS record header: content type 20-23, major version 3. */
static __always_inline bool looks_tls(const __u8 *d, __u32 got)
{
	return got >= 5 && d[0] >= 20 && d[0] <= 23 && d[1] == 3;
}

/* Copy up to `want` bytes from an iovec array into ev->data. */
static __always_inline __u32 copy_iov(struct rt_data_event *ev, const struct iovec *iov, __u64 iovcnt,
				      __u32 want)
{
	__u32 done = 0;

	for (int i = 0; i < RT_MAX_IOV; i++) {
		struct iovec v;

		if (i >= iovcnt || done >= want)
			break;
		if (bpf_probe_read_user(&v, sizeof(v), &iov[i]))
			break;
		__u32 n = want - done;
		if (v.iov_len < n)
			n = v.iov_len;
		if (n == 0)
			continue;
		/* Each bounded on its own (done < RT_MAX_CAPTURE, n <=
		 * RT_MAX_CAPTURE); the scratch spill absorbs their sum. */
		if (n > RT_MAX_CAPTURE)
			n = RT_MAX_CAPTURE;
		done &= RT_MAX_CAPTURE - 1;
		if (bpf_probe_read_user(&ev->data[done], n, v.iov_base)) {
			stat_inc(RT_STAT_READ_FAULTS);
			break;
		}
		done += n;
	}
	return done;
}

/* Sends a staged data record with its `got` captured bytes. */
static __always_inline void send_data(struct rt_data_event *ev, __u32 got)
{
	__u64 size = offsetof(struct rt_data_event, data) + (got & (RT_MAX_CAPTURE - 1));
	if (got == RT_MAX_CAPTURE)
		size = sizeof(*ev);
	if (bpf_ringbuf_output(&events, ev, size, rb_flags()))
		stat_inc(RT_STAT_RINGBUF_FULL_DATA);
	else
		stat_inc(RT_STAT_EVENTS);
}

/* ---- HTTP/2 (h2c) frame walk ----
 *
 * The HPACK dynamic table breaks at the first header-block byte missing,
 * and a prefix capture loses every HEADERS frame written after a large
 * DATA frame. So once a socket is known to speak HTTP/2 (a syscall's
 * bytes start with the client connection preface), each direction's
 * frames are followed here across syscalls: frame headers and the
 * payloads of control and header frames are copied whole, DATA payloads
 * (and unknown frame types) are skipped. The record says which byte
 * ranges were copied (RT_DATA_CHUNKS, abi.h); a syscall whose copied
 * bytes do not fit in one record gives several.
 *
 * The walk state lives in socket-local storage: it goes with the socket
 * (nothing to delete at close, no stale entry when the address is
 * reused), and for the many sockets that have none the lookup is a NULL
 * pointer test inside the helper, not a hash. Socket storage needs the
 * trusted `struct sock` of the socket hooks: under the raw and
 * per-syscall hooks HTTP/2 is captured as a plain prefix. */

/* Frame-walk steps per syscall (a frame takes two or three: header,
 * payload, the next iovec). Past it the direction is given up. */
#define H2_MAX_STEPS 1024
/* iovecs a walk follows: all a syscall may pass (UIO_MAXIOV). gRPC's C
 * core writes a frame as many iovecs (24 for a unary call's first
 * HEADERS), beyond the 16 the plain prefix copy reads. */
#define H2_MAX_IOV 1024
#define H2_TABLE (RT_MAX_CHUNKS * sizeof(struct rt_chunk))
/* Copied bytes one chunked record holds after its table. */
#define H2_ROOM (RT_MAX_CAPTURE - H2_TABLE)
/* Payload bytes read with a frame header, so that a small frame (a
 * request's HEADERS, a control frame) is copied by the same read. */
#define H2_PEEK 1015
#define H2_PEEK_MAX 1024	/* power of two above 9 + H2_PEEK */
/* Frames taken from one read. */
#define H2_BURST 32

struct h2_dir {
	__u32 frame_left;	/* payload bytes of the current frame still to come */
	__u8 copy;		/* they are copied (else skipped) */
	__u8 have;		/* bytes of the next frame header held in hdr */
	__u8 lost;		/* walk given up: plain prefix capture */
	__u8 _pad;
	__u8 hdr[16];		/* a frame header split across syscalls (9 used) */
};

struct h2_sock {
	struct h2_dir dir[2];	/* by enum rt_direction */
};

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct h2_sock);
} h2_socks SEC(".maps");

struct h2_walk {
	struct h2_dir st;	/* the direction's state, written back at the end */
	__u64 ptr;		/* user address of the next byte of the current piece */
	__u64 iov;		/* iovec array (0: one buffer) */
	__u64 left;		/* bytes of the syscall not walked yet */
	__u32 piece_left;	/* bytes left in the current buffer or iovec */
	__u32 iov_i;
	__u32 iov_cnt;
	__u32 out;		/* copied bytes in the current record */
	__u32 covered;		/* syscall bytes the current record stands for */
	__u32 nchunks;		/* closed chunks in the current record's table */
	struct rt_chunk open;	/* the chunk being filled */
	__u32 records;		/* records sent for this syscall */
	__u32 frames;		/* frame headers walked */
	__u8 no_buf;		/* sendfile: nothing to read */
	__u8 full;		/* out of records: copies become skips */
	__u8 done;
	__u8 _pad;
	/* The syscall's iovecs, 16 at a time (one read instead of one per
	 * entry: nginx writes three entries per response). */
	struct iovec iovs[RT_MAX_IOV];
};

/* The walk state of the syscall in progress. In a map value, not on the
 * stack: the verifier then knows nothing of it, so every step of the
 * bpf_loop callback starts from the same verifier state (stack values it
 * would track precisely, and never see converge). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct h2_walk);
} h2_walks SEC(".maps");

/* Sends the current record (its open chunk closed) and starts the next. */
static __always_inline void h2_flush(struct h2_walk *w, struct rt_data_event *ev)
{
	struct rt_chunk *table = (struct rt_chunk *)ev->data;
	__u32 i = w->nchunks & (RT_MAX_CHUNKS - 1);
	if (w->open.copied || w->open.skipped || w->nchunks == 0) {
		table[i].copied = w->open.copied;
		table[i].skipped = w->open.skipped;
		w->nchunks++;
	}
	ev->len = w->covered;
	ev->chunks = w->nchunks;
	__u32 captured = H2_TABLE + (w->out & (RT_MAX_CAPTURE - 1));
	if (captured > RT_MAX_CAPTURE)
		captured = RT_MAX_CAPTURE;
	ev->captured = captured;
	send_data(ev, captured);
	stat_inc(RT_STAT_H2_RECORDS);
	w->records++;
	w->out = 0;
	w->covered = 0;
	w->nchunks = 0;
	w->open.copied = 0;
	w->open.skipped = 0;
}

static __always_inline void h2_skip(struct h2_walk *w, __u32 n)
{
	w->open.skipped += n;
	w->covered += n;
}

/* Room for `n` more copied bytes (at least one; all `n` if `whole`) in
 * the current record, flushing it if needed; 0 once the syscall's
 * records are used up. */
static __always_inline __u32 h2_room(struct h2_walk *w, struct rt_data_event *ev, __u32 n, bool whole)
{
	if (w->full)
		return 0;
	/* Copied after skipped bytes: a new chunk, which needs a slot. */
	bool new_chunk = w->open.skipped != 0;
	if (w->out >= H2_ROOM || (whole && H2_ROOM - w->out < n) ||
	    (new_chunk && w->nchunks >= RT_MAX_CHUNKS - 1)) {
		if (w->records + 1 >= RT_H2_MAX_RECORDS) {
			w->full = 1;
			return 0;
		}
		h2_flush(w, ev);
		new_chunk = false;
	}
	if (new_chunk) {
		struct rt_chunk *table = (struct rt_chunk *)ev->data;
		__u32 i = w->nchunks & (RT_MAX_CHUNKS - 1);
		table[i].copied = w->open.copied;
		table[i].skipped = w->open.skipped;
		w->nchunks++;
		w->open.copied = 0;
		w->open.skipped = 0;
	}
	__u32 room = H2_ROOM - w->out;
	return n < room ? n : room;
}

/* Copies `n` bytes at the walk's position; false on a read fault. */
static __always_inline bool h2_copy(struct h2_walk *w, struct rt_data_event *ev, __u32 n)
{
	__u32 off = (H2_TABLE + w->out) & (RT_MAX_CAPTURE - 1);
	if (n == 0)
		return true;
	/* off and n (<= H2_ROOM) are each below RT_MAX_CAPTURE: the
	 * scratch spill absorbs what the verifier cannot see of their sum. */
	if (bpf_probe_read_user(&ev->data[off], n & (RT_MAX_CAPTURE - 1), (void *)w->ptr)) {
		stat_inc(RT_STAT_READ_FAULTS);
		return false;
	}
	w->out += n;
	w->open.copied += n;
	w->covered += n;
	return true;
}

/* Moves the walk's position `n` bytes on. */
static __always_inline void h2_advance(struct h2_walk *w, __u32 n)
{
	w->ptr += n;
	w->piece_left -= n;
	w->left -= n;
}

/* A frame header that cannot be one: the walk lost its place. Lengths
 * that RFC 9113 fixes are checked; the reserved bit of the stream id is
 * never set by senders. */
static __always_inline bool h2_implausible(const __u8 *h, __u32 len)
{
	__u8 type = h[3];
	if (h[5] & 0x80)
		return true;
	switch (type) {
	case 0x2: /* PRIORITY */
		return len != 5;
	case 0x3: /* RST_STREAM */
	case 0x8: /* WINDOW_UPDATE */
		return len != 4;
	case 0x4: /* SETTINGS */
		return len % 6 != 0;
	case 0x6: /* PING */
		return len != 8;
	}
	return false;
}

/* One step of the walk: the next iovec, a frame header, or a run of
 * payload bytes. Returns 1 to stop. */
static long h2_step(__u32 i, void *ctx)
{
	__u32 zero = 0;
	struct h2_walk *w = bpf_map_lookup_elem(&h2_walks, &zero);
	struct scratch_buf *buf = bpf_map_lookup_elem(&scratch, &zero);
	if (!w || !buf)
		return 1;
	struct rt_data_event *ev = &buf->ev;

	if (w->left == 0) {
		w->done = 1;
		return 1;
	}
	if (w->piece_left == 0) {
		if (!w->iov || w->iov_i >= w->iov_cnt || w->iov_i >= H2_MAX_IOV)
			return 1; /* bytes left that no buffer describes */
		__u32 slot = w->iov_i & (RT_MAX_IOV - 1);
		if (slot == 0) {
			/* The next (up to) 16 entries, in one read. */
			__u32 n = w->iov_cnt - w->iov_i;
			if (n > RT_MAX_IOV)
				n = RT_MAX_IOV;
			if (bpf_probe_read_user(w->iovs, (n * sizeof(struct iovec)) & (2 * sizeof(w->iovs) - 1),
						(void *)(w->iov + (__u64)w->iov_i * sizeof(struct iovec))))
				return 1;
		}
		struct iovec *v = &w->iovs[slot];
		w->iov_i++;
		w->ptr = (__u64)v->iov_base;
		w->piece_left = v->iov_len < w->left ? v->iov_len : w->left;
		return 0;
	}
	__u32 avail = w->piece_left;
	if (w->st.frame_left == 0) {
		/* A frame header, maybe split across syscalls or iovecs. */
		if (w->no_buf)
			return 1;
		__u32 have = w->st.have & 15;
		if (have == 0 && avail >= 9 && h2_room(w, ev, 9, true) == 9) {
			/* Whole in this piece: read once, straight into the
			 * record, with up to H2_PEEK payload bytes after it: a
			 * small header or control frame then costs one read. */
			__u32 off = (H2_TABLE + w->out) & (RT_MAX_CAPTURE - 1);
			__u32 want = H2_ROOM - w->out;
			if (want > avail)
				want = avail;
			if (want > 9 + H2_PEEK)
				want = 9 + H2_PEEK;
			if (want < 9)
				return 1;
			if (bpf_probe_read_user(&ev->data[off], want, (void *)w->ptr)) {
				stat_inc(RT_STAT_READ_FAULTS);
				return 1;
			}
			/* The frames that the read holds whole are taken from
			 * the record without reading again (a burst of requests'
			 * HEADERS), up to the first one it does not: its header
			 * is taken and the steps after go on with its payload. */
			__u32 take = 0;
			for (int k = 0; k < H2_BURST; k++) {
				if (take + 9 > want)
					break;
				__u32 at = (off + (take & (H2_PEEK_MAX - 1))) & (2 * RT_MAX_CAPTURE - 1);
				__builtin_memcpy(w->st.hdr, &buf->ev.data[at], 9);
				__u8 *h = w->st.hdr;
				__u32 len = (__u32)h[0] << 16 | (__u32)h[1] << 8 | h[2];
				if (h2_implausible(h, len))
					return 1;
				w->frames++;
				/* DATA (0) and unknown extension types are skipped. */
				w->st.copy = h[3] != 0 && h[3] <= 9;
				take += 9;
				if (!w->st.copy || len > want - take) {
					w->st.frame_left = len;
					break;
				}
				take += len;
			}
			w->out += take;
			w->open.copied += take;
			w->covered += take;
			h2_advance(w, take);
			return 0;
		} else {
			__u32 n = 9 - (have < 9 ? have : 9);
			if (n > avail)
				n = avail;
			if (n == 0 || n > 9)
				return 1;
			if (bpf_probe_read_user(&w->st.hdr[have], n, (void *)w->ptr))
				return 1;
			if (h2_room(w, ev, n, true) == n) {
				if (!h2_copy(w, ev, n))
					return 1;
			} else {
				stat_add(RT_STAT_H2_HEADER_LOST, n);
				h2_skip(w, n);
			}
			h2_advance(w, n);
			have += n;
		}
		w->st.have = have;
		if (have < 9)
			return 0;
		__u8 *h = w->st.hdr;
		__u32 len = (__u32)h[0] << 16 | (__u32)h[1] << 8 | h[2];
		if (h2_implausible(h, len))
			return 1;
		w->frames++;
		w->st.have = 0;
		w->st.frame_left = len;
		/* DATA (0) and unknown extension types are skipped. */
		w->st.copy = h[3] != 0 && h[3] <= 9;
		return 0;
	}
	__u32 n = w->st.frame_left < avail ? w->st.frame_left : avail;
	if (w->st.copy && !w->no_buf) {
		__u32 room = h2_room(w, ev, n, false);
		if (room == 0) {
			stat_add(RT_STAT_H2_HEADER_LOST, n);
			h2_skip(w, n);
		} else {
			n = room;
			if (!h2_copy(w, ev, n))
				return 1;
		}
	} else {
		if (w->st.copy)
			stat_add(RT_STAT_H2_HEADER_LOST, n);
		h2_skip(w, n);
	}
	h2_advance(w, n);
	w->st.frame_left -= n;
	return 0;
}

/* The `ret` bytes of syscall `sc` on an HTTP/2 socket, walked from state
 * `st` into chunked records (the staged record's fields are set). */
static __always_inline void h2_walk_syscall(struct pt_regs *regs, struct rt_data_event *ev, struct h2_dir *st,
					    long ret, __u8 sc)
{
	__u32 zero = 0;
	struct h2_walk *w = bpf_map_lookup_elem(&h2_walks, &zero);
	if (!w)
		return;
	__builtin_memset(w, 0, sizeof(*w));
	w->st = *st;
	w->left = ret;
	void *ubuf = (void *)SC_ARG2(regs);
	switch (sc) {
	case RT_SYS_READV:
	case RT_SYS_WRITEV:
		w->iov = (__u64)ubuf;
		w->iov_cnt = SC_ARG3(regs);
		break;
	case RT_SYS_RECVMSG:
	case RT_SYS_SENDMSG: {
		struct user_msghdr msg;
		if (bpf_probe_read_user(&msg, sizeof(msg), ubuf))
			break;
		w->iov = (__u64)msg.msg_iov;
		w->iov_cnt = msg.msg_iovlen;
		break;
	}
	case RT_SYS_SENDFILE:
		w->no_buf = 1;
		w->piece_left = ret;
		break;
	default:
		w->ptr = (__u64)ubuf;
		w->piece_left = ret;
		break;
	}
	ev->flags = RT_DATA_CHUNKS;
	bpf_loop(H2_MAX_STEPS, h2_step, NULL, 0);
	if (!w->done) {
		/* The rest of the syscall is one gap, and the direction is
		 * captured as a plain prefix from now on. */
		stat_inc(RT_STAT_H2_DESYNC);
		h2_skip(w, (__u32)w->left);
		w->st.lost = 1;
	}
	h2_flush(w, ev);
	stat_add(RT_STAT_H2_FRAMES, w->frames);
	*st = w->st;
}

/* The client connection preface (RFC 9113, 3.4). */
static __always_inline bool h2_preface(const __u8 *d, __u32 got)
{
	if (got < 24)
		return false;
	const __u64 *q = (const __u64 *)d;
	/* "PRI * HT" "TP/2.0\r\n" "\r\nSM\r\n\r\n", little-endian loads. */
	return q[0] == 0x5448202a20495250ULL && q[1] == 0x0a0d302e322f5054ULL &&
	       q[2] == 0x0a0d0a0d4d530a0dULL;
}

/* A ClientHello (its record and handshake headers, then the random at
 * byte 11) on a socket of a process with SSL objects over non-socket BIOs:
 * the socket is registered as carrying TLS, its SSL object found now (the
 * client's already holds the random) or at its next syscalls. */
static __always_inline bool tls_hello(const __u8 *d, __u32 got, __u64 sock, __u32 tgid)
{
	if (got < 43 || d[0] != 22 || d[1] != 3 || d[5] != 1)
		return false;
	if (!bpf_map_lookup_elem(&tls_pending, &tgid))
		return false;
	struct tls_keysock ks = {};
	__builtin_memcpy(ks.random, d + 11, sizeof(ks.random));
	ks.tries = 1;
	tls_bind(&ks, tgid);
	bpf_map_update_elem(&tls_keysocks, &sock, &ks, BPF_ANY);
	return true;
}

/* ---- traceparent injection (sockops + sk_msg) ----
 *
 * Client sockets of traced processes are marked at connect()
 * (inet_sock_set_state -> SYN_SENT, in the process) with per-socket
 * storage, which the kernel frees with the socket. Once established, the
 * sockops program (attached at the root of a cgroup v2 hierarchy) puts
 * marked sockets in `inject_socks`, to which the sk_msg program is
 * attached: it sees every send of those sockets before TCP does, follows
 * HTTP/1 request framing, and inserts one `traceparent` line after the
 * request line of a request head that lacks one. Anything it cannot
 * follow with certainty (not a request, CONNECT/Upgrade, chunked bodies, a
 * head split across sends or too long) stops injection on that socket for
 * good: bytes are never changed where the framing is not known.
 *
 * Ids: a read that starts a server request records, per thread, the
 * socket and the ids of that request (the trace id of its traceparent,
 * else a new one; a new span id), reported to userspace in the data
 * record (RT_CTX_SERVER) so that the server span uses them. A client
 * request injected while its thread serves exactly one request is that
 * request's child; its ids reach userspace in the record of the write
 * (RT_CTX_INJECTED). The response's first write ends the request on the
 * thread. */

/* Per-socket injection state (client sockets of traced processes). */
enum inject_phase {
	INJ_MARKED = 0,		/* connect() seen, not in inject_socks yet */
	INJ_BOUNDARY = 1,	/* the next byte starts a request */
	INJ_BODY = 2,		/* body_left bytes of a request body follow */
	INJ_NEVER = 3,		/* framing unknown: never touched again */
};

struct inject_sk {
	__u8 phase;		/* enum inject_phase */
	__u8 ids;		/* the ids below await the write's data record */
	__u8 has_parent;
	__u8 _pad[5];
	__u64 body_left;
	__u64 cookie;	/* its key in inject_socks */
	__u8 trace_id[16];
	__u8 span_id[8];
	__u8 parent_id[8];
};

/* Freed with the socket: bounded by the sockets of traced processes. */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct inject_sk);
} inject_sks SEC(".maps");

/* Established client sockets of traced processes the sk_msg program runs
 * on (key: socket cookie). The kernel removes a socket when it closes. */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 65536); /* --max-connections, set by userspace */
	__type(key, __u64);
	__type(value, __u64);
} inject_socks SEC(".maps");

/* Cookies of sockets given up on, for userspace to take out of
 * inject_socks (an sk_msg program cannot delete from its sockhash). */
struct {
	__uint(type, BPF_MAP_TYPE_QUEUE);
	__uint(max_entries, 4096);
	__type(value, __u64);
} inject_gone SEC(".maps");

#define CTX_SLOTS 4
/* The server requests a thread is serving (read, response not written).
 * With more in progress than slots, some are not tracked: the thread
 * gives no parent until CTX_OVERFLOW_NS after the last one left out. */
#define CTX_OVERFLOW_NS 2000000000ULL
/* A request whose response this thread never writes (another thread
 * does, or the connection closed) is forgotten after this long. */
#define CTX_TTL_NS 10000000000ULL
struct thread_ctx {
	__u64 overflow_until;	/* ktime; 0: every request is tracked */
	__u64 since[CTX_SLOTS];	/* ktime of the request's read */
	__u64 sk[CTX_SLOTS];
	__u8 trace_id[CTX_SLOTS][16];
	__u8 span_id[CTX_SLOTS][8];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct thread_ctx);
} thread_ctxs SEC(".maps");

/* The scan of one request head. Kept in a map value, not on the stack:
 * the verifier then sees its fields as unknown, and the bpf_loop body
 * converges at once instead of being walked per byte value. */
struct hscan {
	__u32 len;	/* bytes in b */
	__u32 line;	/* start of the line being read */
	__u32 rl_end;	/* offset after the request line's CRLF (0: not yet) */
	__u32 end;	/* offset after the head's empty line (0: not seen) */
	__u32 tp;	/* offset after "traceparent:" (0: none) */
	__u32 flags;
	__u32 cl_at;	/* the Content-Length value: [cl_at, cl_end) */
	__u32 cl_end;
	__u64 cl;	/* its value */
	__u8 cl_state;	/* 0 none yet, 1 digits, 2 after them, 3 not a number */
	__u8 cl_seen;
	__u8 connect;
	__u8 _pad[5];
};

/* The request head being looked at (too big for the stack). */
struct inject_buf {
	__u8 b[RT_INJECT_HEAD_MAX];
	__u8 spill[64];	/* absorbs compares reaching past the mask */
	__u8 line[80];	/* the traceparent line to insert */
	struct hscan s;
};

/* bpf_loop context (it must be on the stack): the map value. */
struct hctx {
	struct inject_buf *ib;
	const __u8 *b;	/* the bytes scanned: ib->b, or a data record's */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct inject_buf);
} inject_scratch SEC(".maps");

#define HEAD_MASK (RT_INJECT_HEAD_MAX - 1)
/* "traceparent: 00-" 32 "-" 16 "-01\r\n" */
#define TP_LINE_LEN 70

/* Scan flags. */
enum {
	HS_BAD = 1,		/* not an HTTP/1 request line */
	HS_TUNNEL = 2,		/* CONNECT or Upgrade */
	HS_CHUNKED = 4,		/* Transfer-Encoding */
	HS_TRACEPARENT = 8,
	HS_CL_TWICE = 16,
};


static __always_inline bool name_is(const __u8 *b, __u32 at, __u32 len, const char *name, __u32 n)
{
	if (at + n > len)
		return false;
	for (__u32 k = 0; k < n; k++) {
		/* Letters fold to lower case; ':' and '-' are unchanged. */
		if ((b[(at + k) & HEAD_MASK] | 0x20) != (__u8)name[k])
			return false;
	}
	return true;
}

/* One header line [at, nl) by its name. */
static __always_inline void header_line(struct hscan *s, const __u8 *b, __u32 at, __u32 nl)
{
	/* Most lines are none of these: one byte tells. */
	__u8 c = b[at & HEAD_MASK] | 0x20;
	if (c == 't') {
		if (name_is(b, at, s->len, "traceparent:", 12)) {
			s->flags |= HS_TRACEPARENT;
			s->tp = at + 12;
		} else if (name_is(b, at, s->len, "transfer-encoding:", 18)) {
			s->flags |= HS_CHUNKED;
		}
	} else if (c == 'c') {
		if (name_is(b, at, s->len, "content-length:", 15)) {
			if (s->cl_seen)
				s->flags |= HS_CL_TWICE;
			s->cl_seen = 1;
			s->cl_at = at + 15;
			s->cl_end = nl;
		}
	} else if (c == 'u') {
		if (name_is(b, at, s->len, "upgrade:", 8))
			s->flags |= HS_TUNNEL;
	}
}

/* A line ends with the '\n' at nl. Returns 1 to stop the scan. */
static __always_inline long hscan_newline(struct hscan *s, const __u8 *b, __u32 nl)
{
	if (nl >= s->len)
		return 1;
	if (nl == 0 || b[(nl - 1) & HEAD_MASK] != '\r') {
		s->flags |= HS_BAD; /* bare LF */
		return 1;
	}
	if (!s->rl_end) {
		/* The request line ends with " HTTP/1.x\r\n". */
		if (nl < 12 || b[(nl - 10) & HEAD_MASK] != ' ' ||
		    !name_is(b, nl - 9, s->len, "http/1.", 7) ||
		    b[(nl - 2) & HEAD_MASK] < '0' || b[(nl - 2) & HEAD_MASK] > '9') {
			s->flags |= HS_BAD;
			return 1;
		}
		s->rl_end = nl + 1;
		s->line = nl + 1;
		return 0;
	}
	if (nl == s->line + 1) {
		s->end = nl + 1;
		return 1;
	}
	header_line(s, b, s->line, nl);
	s->line = nl + 1;
	return 0;
}

/* bpf_loop body: the 8 bytes at 8*w. A word without '\n' costs a few
 * instructions; each '\n' is a line to look at. Returns 1 to stop. */
static long hscan_word(__u32 w, struct hctx *hc)
{
	struct inject_buf *ib = hc->ib;
	if (!ib)
		return 1;
	struct hscan *s = &ib->s;
	const __u8 *b = hc->b;
	if (!b)
		return 1;
	__u32 base = (w * 8) & HEAD_MASK;
	if (base >= s->len)
		return 1;
	__u64 v = *(const __u64 *)(b + base);
	__u64 x = v ^ 0x0a0a0a0a0a0a0a0aULL;
	/* Candidates only (a borrow can flag a byte after a real one): each
	 * is checked below. */
	__u64 m = (x - 0x0101010101010101ULL) & ~x & 0x8080808080808080ULL;
	if (!m)
		return 0;
	for (int k = 0; k < 8; k++) {
		if (!(m & (0x80ULL << (8 * k))))
			continue;
		__u32 nl = base + k;
		if (b[nl & HEAD_MASK] != '\n')
			continue;
		if (hscan_newline(s, b, nl))
			return 1;
	}
	return 0;
}

/* Scans the `len` bytes of ib->b into ib->s: the request line (a method
 * of upper-case letters, a target, HTTP/1.x), the header lines that
 * matter and the head's end. */
static __always_inline struct hscan *hscan_run(struct inject_buf *ib, const __u8 *b, __u32 len)
{
	struct hscan *s = &ib->s;
	__builtin_memset(s, 0, sizeof(*s));
	s->len = len;
	__u32 m = 0;
	for (; m < 24 && m < len; m++) {
		__u8 c = b[m];
		if (c < 'A' || c > 'Z')
			break;
	}
	if (m == 0 || m >= len || b[m & HEAD_MASK] != ' ') {
		s->flags |= HS_BAD;
		return s;
	}
	s->connect = m == 7 && name_is(b, 0, len, "connect", 7);
	struct hctx hc = { .ib = ib, .b = b };
	bpf_loop((len + 7) / 8, hscan_word, &hc, 0);
	/* A '\r' or space inside the request line's target, or a line
	 * before it ends: left to the server. Only the framing matters. */
	return s;
}

/* bpf_loop body: byte k of the Content-Length value (in the map value,
 * so the verifier does not walk each digit path). Returns 1 to stop. */
static long cl_byte(__u32 k, struct hctx *hc)
{
	struct inject_buf *ib = hc->ib;
	if (!ib)
		return 1;
	struct hscan *s = &ib->s;
	__u32 i = s->cl_at + k;
	if (i + 1 >= s->cl_end) /* the '\r' */
		return 1;
	__u8 c = ib->b[i & HEAD_MASK];
	if (c >= '0' && c <= '9' && s->cl_state < 2) {
		s->cl = s->cl * 10 + (c - '0');
		s->cl_state = 1;
		if (s->cl > 1000000000000000ULL) {
			s->cl_state = 3;
			return 1;
		}
	} else if (c == ' ' || c == '\t') {
		if (s->cl_state == 1)
			s->cl_state = 2;
	} else {
		s->cl_state = 3;
		return 1;
	}
	return 0;
}

/* The Content-Length value: one number, spaces around. False otherwise
 * (then the framing is not followed). */
static __always_inline bool cl_value(struct inject_buf *ib, __u64 *out)
{
	struct hscan *s = &ib->s;
	s->cl = 0;
	s->cl_state = 0;
	struct hctx hc = { .ib = ib, .b = ib->b };
	bpf_loop(24, cl_byte, &hc, 0);
	if (s->cl_state != 1 && s->cl_state != 2)
		return false;
	*out = s->cl;
	return true;
}

static __always_inline void random_ids(__u8 *dst, __u32 words)
{
	for (__u32 k = 0; k < words; k++) {
		__u32 r = bpf_get_prandom_u32();
		__builtin_memcpy(dst + 4 * k, &r, 4);
	}
}

static __always_inline int hexval(__u8 c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* The trace id of a `traceparent: 00-<32 hex>-<16 hex>-<2 hex>` value at
 * s->tp (lower-case hex, as W3C requires); false when malformed. */
static __always_inline bool traceparent_trace_id(struct hscan *s, const __u8 *b, __u8 *out)
{
	__u32 at = s->tp;
	for (int k = 0; k < 4; k++) {
		if (at < s->len && (b[at & HEAD_MASK] == ' ' || b[at & HEAD_MASK] == '\t'))
			at++;
	}
	if (at + 55 > s->len || b[at & HEAD_MASK] != '0' || b[(at + 1) & HEAD_MASK] != '0' ||
	    b[(at + 2) & HEAD_MASK] != '-' || b[(at + 35) & HEAD_MASK] != '-' ||
	    b[(at + 52) & HEAD_MASK] != '-')
		return false;
	__u8 any = 0;
	for (int k = 0; k < 16; k++) {
		int hi = hexval(b[(at + 3 + 2 * k) & HEAD_MASK]);
		int lo = hexval(b[(at + 4 + 2 * k) & HEAD_MASK]);
		if (hi < 0 || lo < 0)
			return false;
		out[k] = hi << 4 | lo;
		any |= out[k];
	}
	return any != 0;
}

/* Ingress of a traced process: a read starting a server request (its
 * captured prefix holds the request line) gets ids, recorded for the
 * thread and reported in the record. */
static __always_inline void inject_server_read(struct rt_data_event *ev, __u32 got, __u64 sock,
					       __u64 pid_tgid)
{
	/* Cheap gate before the scan: an upper-case letter, and not the
	 * status line of a response read by a client. */
	if (got < 16 || ev->data[0] < 'A' || ev->data[0] > 'Z' ||
	    (ev->data[0] == 'H' && ev->data[1] == 'T'))
		return;
	__u32 zero = 0;
	struct inject_buf *ib = bpf_map_lookup_elem(&inject_scratch, &zero);
	if (!ib)
		return;
	__u32 n = got;
	if (n > RT_INJECT_HEAD_MAX)
		n = RT_INJECT_HEAD_MAX;
	/* Scanned in place: the record's buffer outsizes the mask. */
	struct hscan *s = hscan_run(ib, ev->data, n);
	if ((s->flags & HS_BAD) || !s->rl_end)
		return;
	if (!(s->flags & HS_TRACEPARENT) || !traceparent_trace_id(s, ev->data, ev->trace_id))
		random_ids(ev->trace_id, 4);
	random_ids(ev->span_id, 2);
	ev->ctx = RT_CTX_SERVER;

	struct thread_ctx *t = bpf_map_lookup_elem(&thread_ctxs, &pid_tgid);
	if (!t) {
		struct thread_ctx fresh = {};
		bpf_map_update_elem(&thread_ctxs, &pid_tgid, &fresh, BPF_NOEXIST);
		t = bpf_map_lookup_elem(&thread_ctxs, &pid_tgid);
		if (!t)
			return;
	}
	/* The same connection's slot (its next request), else a free one;
	 * with none free the thread serves too many to tell (no parent). */
	int slot = -1;
	__u64 now = bpf_ktime_get_ns();
	for (int k = 0; k < CTX_SLOTS; k++) {
		if (t->sk[k] && now - t->since[k] > CTX_TTL_NS)
			t->sk[k] = 0;
		if (t->sk[k] == sock) {
			slot = k;
			break;
		}
		if (!t->sk[k] && slot < 0)
			slot = k;
	}
	if (slot < 0 || slot >= CTX_SLOTS) {
		t->overflow_until = now + CTX_OVERFLOW_NS;
		return;
	}
	t->sk[slot] = sock;
	t->since[slot] = now;
	__builtin_memcpy(t->trace_id[slot], ev->trace_id, 16);
	__builtin_memcpy(t->span_id[slot], ev->span_id, 8);
}

/* Egress of a traced process: the response's first write ends the
 * thread's request on that socket; a client write takes the ids its
 * sk_msg pass injected. */
static __always_inline void inject_write(struct rt_data_event *ev, struct sock *sk, __u64 pid_tgid)
{
	struct inject_sk *st = bpf_sk_storage_get(&inject_sks, sk, 0, 0);
	if (st) {
		if (st->ids) {
			__builtin_memcpy(ev->trace_id, st->trace_id, 16);
			__builtin_memcpy(ev->span_id, st->span_id, 8);
			__builtin_memcpy(ev->parent_id, st->parent_id, 8);
			ev->has_parent = st->has_parent;
			ev->ctx = RT_CTX_INJECTED;
			st->ids = 0;
		}
		return;
	}
	struct thread_ctx *t = bpf_map_lookup_elem(&thread_ctxs, &pid_tgid);
	if (!t)
		return;
	__u64 sock = (__u64)sk;
	for (int k = 0; k < CTX_SLOTS; k++) {
		if (t->sk[k] == sock)
			t->sk[k] = 0;
	}
}

/* Marks a client socket of a traced process at connect(). */
static __always_inline void inject_mark(struct sock *sk)
{
	__u16 family = sk->__sk_common.skc_family;
	if (family != AF_INET && family != AF_INET6)
		return;
	bpf_sk_storage_get(&inject_sks, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
}

SEC("sockops")
int inject_sockops(struct bpf_sock_ops *skops)
{
	if (skops->op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB)
		return 1;
	struct bpf_sock *sk = skops->sk;
	if (!sk)
		return 1;
	struct inject_sk *st = bpf_sk_storage_get(&inject_sks, sk, 0, 0);
	if (!st || st->phase != INJ_MARKED)
		return 1;
	__u64 key = bpf_get_socket_cookie(skops);
	st->cookie = key;
	if (bpf_sock_hash_update(skops, &inject_socks, &key, BPF_NOEXIST)) {
		stat_inc(RT_STAT_INJECT_SOCKHASH_FULL);
		st->phase = INJ_NEVER;
	} else {
		st->phase = INJ_BOUNDARY;
	}
	return 1;
}

static const char hexdig[16] = "0123456789abcdef";

/* Writes the traceparent line for `st`'s ids into ib->line. */
static __always_inline void tp_line(struct inject_buf *ib, struct inject_sk *st)
{
	__u8 *l = ib->line;
	__builtin_memcpy(l, "traceparent: 00-", 16);
	for (int k = 0; k < 16; k++) {
		l[16 + 2 * k] = hexdig[(st->trace_id[k] >> 4) & 15];
		l[17 + 2 * k] = hexdig[st->trace_id[k] & 15];
	}
	l[48] = '-';
	for (int k = 0; k < 8; k++) {
		l[49 + 2 * k] = hexdig[(st->span_id[k] >> 4) & 15];
		l[50 + 2 * k] = hexdig[st->span_id[k] & 15];
	}
	__builtin_memcpy(l + 65, "-01\r\n", 5);
}

/* Sends up to this size are made one scatterlist element before they
 * leave: tcp_bpf pushes each element to TCP on its own, and a second small
 * segment behind an unacknowledged one waits for the peer's delayed ACK
 * (Nagle), 40 ms on a keep-alive connection without TCP_NODELAY. Also
 * the bound of the packet offsets the verifier accepts. */
#define MSG_LINEAR_MAX 32768

/* Inserts the line at `at`, leaving the message one element. False when
 * the kernel refused (nothing inserted, or the insertion undone). */
static __always_inline bool tp_insert(struct sk_msg_md *msg, struct inject_buf *ib, __u32 at)
{
	if (bpf_msg_push_data(msg, at, TP_LINE_LEN, 0))
		return false;
	__u32 size = msg->size;
	if (size > MSG_LINEAR_MAX || at >= size || bpf_msg_pull_data(msg, 0, size, 0))
		goto undo;
	__u8 *p = msg->data;
	at &= MSG_LINEAR_MAX - 1;
	p += at;
	if ((void *)(p + TP_LINE_LEN) > msg->data_end)
		goto undo;
	__builtin_memcpy(p, ib->line, 64);
	__builtin_memcpy(p + 64, ib->line + 64, TP_LINE_LEN - 64);
	return true;
undo:
	/* The pushed bytes are uninitialised: they must not leave. */
	bpf_msg_pop_data(msg, at, TP_LINE_LEN, 0);
	return false;
}

/* Requests followed per send (pipelining); past them, the socket is
 * given up. */
#define MSG_REQUESTS 8

static __always_inline void give_up(struct inject_sk *st, __u32 stat)
{
	st->phase = INJ_NEVER;
	stat_inc(stat);
}

/* One request starting at `off` of a send whose state is `st`: returns
 * the offset after it (its body included; REQ_INJECTED set when a line
 * was inserted), or REQ_STOP when the rest of the send is not followed
 * (st says why). A global function: verified once, not per request. */
#define REQ_STOP -1
#define REQ_END -2	/* the send ends on a request boundary */
#define REQ_INJECTED (1 << 30)

__noinline int inject_request(struct sk_msg_md *msg, struct inject_sk *st, __u32 off, int done)
{
	if (!msg || !st)
		return REQ_STOP;
	__u32 zero = 0;
	struct inject_buf *ib = bpf_map_lookup_elem(&inject_scratch, &zero);
	if (!ib)
		return REQ_STOP;
	__u32 size = msg->size;
	if (off >= size)
		return REQ_END;
	if (size >= REQ_INJECTED)
		return REQ_STOP;
	__u32 n = size - off;
	if (n > RT_INJECT_HEAD_MAX)
		n = RT_INJECT_HEAD_MAX;
	if (bpf_msg_pull_data(msg, off, off + n, 0)) {
		give_up(st, RT_STAT_INJECT_FAILED);
		return REQ_STOP;
	}
	void *data = msg->data;
	if ((__u64)msg->data_end - (__u64)data < n || n == 0 ||
	    bpf_probe_read_kernel(ib->b, n & HEAD_MASK ?: RT_INJECT_HEAD_MAX, data)) {
		give_up(st, RT_STAT_INJECT_FAILED);
		return REQ_STOP;
	}
	struct hscan *s = hscan_run(ib, ib->b, n);
	if (s->flags & HS_BAD) {
		give_up(st, RT_STAT_INJECT_NOT_HTTP);
		return REQ_STOP;
	}
	if (!s->end) {
		/* A head cut by the send, or longer than we look. */
		give_up(st, n == RT_INJECT_HEAD_MAX ? RT_STAT_INJECT_TOO_LONG : RT_STAT_INJECT_SPLIT);
		return REQ_STOP;
	}
	if (s->connect || (s->flags & HS_TUNNEL)) {
		give_up(st, RT_STAT_INJECT_TUNNEL);
		return REQ_STOP;
	}
	__u64 cl = 0;
	if ((s->flags & (HS_CHUNKED | HS_CL_TWICE)) || (s->cl_seen && !cl_value(ib, &cl))) {
		give_up(st, RT_STAT_INJECT_CHUNKED);
		return REQ_STOP;
	}
	__u32 head = s->end;
	int injected = 0;
	if (s->flags & HS_TRACEPARENT) {
		stat_inc(RT_STAT_INJECT_HAS_TRACEPARENT);
	} else if (done) {
		/* One set of ids per send reaches userspace. */
		stat_inc(RT_STAT_INJECT_PIPELINED);
	} else if (size + TP_LINE_LEN > MSG_LINEAR_MAX) {
		stat_inc(RT_STAT_INJECT_LARGE_SEND);
	} else {
		__u64 pid_tgid = bpf_get_current_pid_tgid();
		struct thread_ctx *t = bpf_map_lookup_elem(&thread_ctxs, &pid_tgid);
		int open = 0, which = 0;
		__u64 now = bpf_ktime_get_ns();
		if (t) {
			for (int k = 0; k < CTX_SLOTS; k++) {
				if (t->sk[k] && now - t->since[k] <= CTX_TTL_NS) {
					open++;
					which = k;
				}
			}
		}
		if (t && open == 1 && which >= 0 && which < CTX_SLOTS &&
		    (!t->overflow_until || now > t->overflow_until)) {
			__builtin_memcpy(st->trace_id, t->trace_id[which], 16);
			__builtin_memcpy(st->parent_id, t->span_id[which], 8);
			st->has_parent = 1;
		} else {
			random_ids(st->trace_id, 4);
			st->has_parent = 0;
		}
		random_ids(st->span_id, 2);
		tp_line(ib, st);
		if (!tp_insert(msg, ib, off + s->rl_end)) {
			give_up(st, RT_STAT_INJECT_FAILED);
			return REQ_STOP;
		}
		stat_inc(RT_STAT_INJECTED);
		st->ids = 1;
		injected = REQ_INJECTED;
		head += TP_LINE_LEN;
		size = msg->size;
	}
	/* The body: in this send, or continued in the next ones. */
	__u64 rest = (__u64)size - off - head;
	if (cl > rest) {
		st->body_left = cl - rest;
		st->phase = INJ_BODY;
		return REQ_STOP;
	}
	return (off + head + (__u32)cl) | injected;
}

/* One element for a send that stays in the sockhash (see MSG_LINEAR_MAX):
 * a copy only when it spans several. */
static __always_inline void linearize(struct sk_msg_md *msg)
{
	__u32 size = msg->size;
	if (size > 0 && size <= MSG_LINEAR_MAX)
		bpf_msg_pull_data(msg, 0, size, 0);
}

SEC("sk_msg")
int inject_msg(struct sk_msg_md *msg)
{
	struct bpf_sock *bsk = msg->sk;
	if (!bsk)
		return SK_PASS;
	struct inject_sk *st = bpf_sk_storage_get(&inject_sks, bsk, 0, 0);
	if (!st)
		return SK_PASS;
	/* A socket given up on until userspace takes it out of the sockhash
	 * (inject_gone): its sends still go out whole. */
	if (st->phase == INJ_NEVER || st->phase == INJ_MARKED) {
		linearize(msg);
		return SK_PASS;
	}
	__u32 size = msg->size;
	__u32 off = 0;
	if (st->phase == INJ_BODY) {
		if (st->body_left >= size) {
			st->body_left -= size;
			linearize(msg);
			return SK_PASS;
		}
		off = st->body_left;
		st->body_left = 0;
		st->phase = INJ_BOUNDARY;
	}
	int done = 0;
	for (int r = 0; r < MSG_REQUESTS; r++) {
		int next = inject_request(msg, st, off, done);
		if (next < 0)
			goto out;
		done |= next & REQ_INJECTED;
		off = next & (REQ_INJECTED - 1);
	}
	/* More requests in one send than followed: given up unless it ends
	 * right here. */
	if (inject_request(msg, st, off, 1) != REQ_END)
		give_up(st, RT_STAT_INJECT_PIPELINED);
out:
	if (st->phase == INJ_NEVER) {
		/* Given up just now: back to plain TCP once userspace takes it
		 * out (queue full: it stays until it closes). */
		__u64 cookie = st->cookie;
		bpf_map_push_elem(&inject_gone, &cookie, 0);
	}
	linearize(msg);
	return SK_PASS;
}

/* A data record for `ret` bytes that syscall `sc` (arguments in `regs`)
 * moved on the TCP socket `sk`, descriptor `fd`. `btf_sk`: `sk` is the
 * trusted pointer of a socket hook, so socket storage can be used (HTTP/2
 * walks, injection's per-socket state). */
static __always_inline void emit_sock_data(struct pt_regs *regs, struct sock *sk, __u32 fd, long ret,
					   __u8 sc, __u8 dir, __u64 pid_tgid, bool btf_sk)
{
	bool h2 = btf_sk;
	bool cipher = false;
	__u32 tgid = pid_tgid >> 32;
	if (tls_capture && bpf_map_lookup_elem(&tls_procs, &tgid)) {
		__u64 sock = (__u64)sk;
		struct tls_call *c = bpf_map_lookup_elem(&tls_calls, &pid_tgid);
		if (c) {
			/* Inside SSL_read/SSL_write: this is its ciphertext. */
			c->sock = sock;
			c->fd = fd;
			__u8 one = 1;
			bpf_map_update_elem(&tls_socks, &sock, &one, BPF_ANY);
			return;
		}
		struct tls_keysock *ks = bpf_map_lookup_elem(&tls_keysocks, &sock);
		if (ks) {
			cipher = true;
			if (!ks->ssl && ks->tries++ < TLS_BIND_TRIES && !tls_bind(ks, pid_tgid >> 32) &&
			    ks->tries == TLS_BIND_TRIES) {
				/* Its SSL object is not among the pending ones: the
				 * rest of the connection is reported as plain bytes
				 * (counted unparsed), without the 8 KiB capture. */
				stat_inc(RT_STAT_TLS_HELLO_UNMATCHED);
				bpf_map_delete_elem(&tls_keysocks, &sock);
			} else if (ks->ssl && !ks->sent) {
				tls_try_keys(ks, sock, fd, pid_tgid);
			}
		} else if (bpf_map_lookup_elem(&tls_socks, &sock)) {
			if (dir == RT_DIR_INGRESS) {
				struct sock_fd last = { .sock = sock, .fd = fd };
				bpf_map_update_elem(&tls_last, &pid_tgid, &last, BPF_ANY);
			}
			return;
		}
	}

	__u32 zero = 0;
	struct scratch_buf *buf = bpf_map_lookup_elem(&scratch, &zero);
	if (!buf)
		return;
	struct rt_data_event *ev = &buf->ev;
	fill_header(&ev->hdr, RT_EV_DATA, pid_tgid);
	ev->sock_id = (__u64)sk;
	ev->len = ret;
	ev->fd = fd;
	ev->direction = dir;
	ev->syscall = sc;
	ev->queued_ns = 0;
	if (dir == RT_DIR_INGRESS && CONFIG_HZ > 0) {
		/* tcp_mstamp would be precise but the read itself refreshes it;
		 * lrcvtime (jiffies of the last data segment received) is not
		 * touched by reads. Two ticks or more is a real wait. */
		__u32 last = bpf_core_cast(sk, struct inet_connection_sock)->icsk_ack.lrcvtime;
		__u32 ticks = (__u32)bpf_jiffies64() - last;
		if (ticks >= 2 && ticks < 0x7fffffff)
			ev->queued_ns = (__u64)ticks * (1000000000ULL / CONFIG_HZ);
	}
	read_tuple(sk, &ev->tuple);
	ev->chunks = 0;
	/* The scratch record keeps the last one's ids: no ids unless set. */
	ev->ctx = RT_CTX_NONE;
	ev->has_parent = 0;

	/* A socket known to speak HTTP/2: its frames are walked. */
	struct h2_sock *hs = NULL;
	if (h2 && h2_walk && !cipher) {
		hs = bpf_sk_storage_get(&h2_socks, sk, 0, 0);
		if (hs && !hs->dir[dir & 1].lost) {
			h2_walk_syscall(regs, ev, &hs->dir[dir & 1], ret, sc);
			return;
		}
	}

	/* Ciphertext to decrypt: as much as a record can hold, so that a
	 * write of several records (a handshake flight) keeps every record
	 * header, and whole records can be authenticated. */
	__u32 want = cipher ? RT_MAX_CAPTURE : capture_bytes;
	if (want > RT_MAX_CAPTURE)
		want = RT_MAX_CAPTURE;
	if ((__u64)ret < want)
		want = ret;

	__u32 got = 0;
	void *ubuf = (void *)SC_ARG2(regs);
	switch (sc) {
	case RT_SYS_READ:
	case RT_SYS_WRITE:
	case RT_SYS_RECVFROM:
	case RT_SYS_SENDTO:
		if (want > 0) {
			if (bpf_probe_read_user(ev->data, want & (RT_MAX_CAPTURE - 1) ?: RT_MAX_CAPTURE, ubuf))
				stat_inc(RT_STAT_READ_FAULTS);
			else
				got = want;
		}
		break;
	case RT_SYS_READV:
	case RT_SYS_WRITEV:
		got = copy_iov(ev, ubuf, SC_ARG3(regs), want);
		break;
	case RT_SYS_RECVMSG:
	case RT_SYS_SENDMSG: {
		struct user_msghdr msg;
		if (bpf_probe_read_user(&msg, sizeof(msg), ubuf)) {
			stat_inc(RT_STAT_READ_FAULTS);
			break;
		}
		got = copy_iov(ev, msg.msg_iov, msg.msg_iovlen, want);
		break;
	}
	default: /* sendfile: the bytes come from a file; only the count */
		break;
	}
	/* sendfile has no payload to capture: not a truncation. */
	if (sc != RT_SYS_SENDFILE && (__u64)got < (__u64)ret)
		stat_inc(RT_STAT_TRUNCATED);
	ev->captured = got;
	if (h2 && h2_walk && !cipher && !hs && h2_preface(ev->data, got)) {
		/* The client's first bytes: from here both directions are
		 * walked, this syscall's first 24 bytes (the preface) copied
		 * as if they were a frame. */
		hs = bpf_sk_storage_get(&h2_socks, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
		if (hs) {
			stat_inc(RT_STAT_H2_CONNS);
			__builtin_memset(hs, 0, sizeof(*hs));
			hs->dir[dir & 1].frame_left = 24;
			hs->dir[dir & 1].copy = 1;
			h2_walk_syscall(regs, ev, &hs->dir[dir & 1], ret, sc);
			return;
		}
		stat_inc(RT_STAT_H2_DESYNC);
	}
	if (tls_capture && !cipher && tls_hello(ev->data, got, (__u64)sk, pid_tgid >> 32))
		cipher = true;
	ev->flags = cipher ? RT_DATA_CIPHER : 0;
	/* The socket hooks' `sk` is BTF-typed, as socket storage needs. */
	if (inject && btf_sk && !cipher) {
		if (dir == RT_DIR_INGRESS)
			inject_server_read(ev, got, (__u64)sk, pid_tgid);
		else
			inject_write(ev, sk, pid_tgid);
	}
	if (tls_capture && !cipher && dir == RT_DIR_INGRESS && looks_tls(ev->data, got)) {
		/* Maybe the ciphertext of an SSL_read to come (memory BIOs). */
		struct sock_fd last = { .sock = (__u64)sk, .fd = fd };
		bpf_map_update_elem(&tls_last, &pid_tgid, &last, BPF_ANY);
	}
	send_data(ev, got);
}

static __always_inline void emit_data(struct pt_regs *regs, long ret, __u8 sc, __u8 dir, __u64 pid_tgid)
{
	__u32 fd = (__u32)SC_ARG1(regs);
	struct sock *sk = tcp_sock_of_fd(fd);
	if (!sk)
		return;
	remember_fd(pid_tgid, fd, sk);
	emit_sock_data(regs, sk, fd, ret, sc, dir, pid_tgid, false);
}

/* A zeroed control record (not payload) with its header filled in, or NULL
 * (counted) when the ring buffer is full. `size` is constant at each
 * inlined call site, as bpf_ringbuf_reserve() requires. */
static __always_inline void *ctrl_reserve(__u64 size, __u8 kind, __u64 pid_tgid)
{
	struct rt_header *h = bpf_ringbuf_reserve(&events, size, 0);

	if (!h) {
		stat_inc(RT_STAT_RINGBUF_FULL_CTRL);
		return NULL;
	}
	__builtin_memset(h, 0, size);
	fill_header(h, kind, pid_tgid);
	return h;
}

static __always_inline void ctrl_submit(void *ev, __u64 flags)
{
	bpf_ringbuf_submit(ev, flags);
	stat_inc(RT_STAT_EVENTS);
}

static __always_inline void emit_conn_sk(struct sock *sk, long fd, __u8 origin, __u64 pid_tgid)
{
	struct rt_conn_event *ev = ctrl_reserve(sizeof(*ev), RT_EV_CONN_OPEN, pid_tgid);
	if (!ev)
		return;
	ev->sock_id = (__u64)sk;
	ev->fd = fd;
	ev->origin = origin;
	read_tuple(sk, &ev->tuple);
	ctrl_submit(ev, rb_flags());
}

static __always_inline void emit_conn(long fd, __u8 origin, __u64 pid_tgid)
{
	struct sock *sk = tcp_sock_of_fd(fd);
	if (!sk)
		return;
	remember_fd(pid_tgid, fd, sk);
	emit_conn_sk(sk, fd, origin, pid_tgid);
}

static __always_inline void emit_close_record(__u64 sk, __u32 fd, __u64 pid_tgid)
{
	if (tls_capture) {
		/* The struct sock address will be reused by another socket. */
		bpf_map_delete_elem(&tls_socks, &sk);
		bpf_map_delete_elem(&tls_keysocks, &sk);
	}
	struct rt_close_event *ev = ctrl_reserve(sizeof(*ev), RT_EV_CLOSE, pid_tgid);
	if (!ev)
		return;
	ev->fd = fd;
	ev->sock_id = sk;
	ctrl_submit(ev, rb_flags());
}

static __always_inline void emit_close(long fd, __u64 pid_tgid)
{
	__u64 key = (pid_tgid & 0xffffffff00000000ULL) | (__u32)fd;
	__u64 *sock = bpf_map_lookup_elem(&sock_fds, &key);
	if (!sock)
		return; /* not a socket we saw */
	__u64 sk = *sock;
	bpf_map_delete_elem(&sock_fds, &key);
	emit_close_record(sk, fd, pid_tgid);
}

static __always_inline void emit_listen_sk(struct sock *sk, long fd, __u64 pid_tgid)
{
	struct rt_listen_event *ev = ctrl_reserve(sizeof(*ev), RT_EV_LISTEN, pid_tgid);
	if (!ev)
		return;
	ev->port = sk->__sk_common.skc_num;
	ev->family = sk->__sk_common.skc_family;
	ev->fd = fd;
	/* Always wake: discovery must be prompt, and listen() is rare. */
	ctrl_submit(ev, BPF_RB_FORCE_WAKEUP);
}

static __always_inline void emit_listen(long fd, __u64 pid_tgid)
{
	struct sock *sk = tcp_sock_of_fd(fd);
	if (!sk)
		return;
	emit_listen_sk(sk, fd, pid_tgid);
}

/* The data syscall `nr` is (enum rt_syscall; 0 if none) and its direction. */
static __always_inline __u8 data_syscall(long nr, __u8 *dir)
{
	*dir = RT_DIR_INGRESS;
	switch (nr) {
	case NR_read: return RT_SYS_READ;
	case NR_recvfrom: return RT_SYS_RECVFROM;
	case NR_readv: return RT_SYS_READV;
	case NR_recvmsg: return RT_SYS_RECVMSG;
	}
	*dir = RT_DIR_EGRESS;
	switch (nr) {
	case NR_write: return RT_SYS_WRITE;
	case NR_sendto: return RT_SYS_SENDTO;
	case NR_writev: return RT_SYS_WRITEV;
	case NR_sendmsg: return RT_SYS_SENDMSG;
	case NR_sendfile: return RT_SYS_SENDFILE;
	}
	return 0;
}

/* The whole syscall-exit logic, shared by the two ways of hooking it. */
static __always_inline int handle_exit(long nr, long ret, struct pt_regs *regs)
{
	__u8 dir;
	__u8 sc = data_syscall(nr, &dir);

	/* Cheapest test first: most syscalls on the host are not ours. */
	if (!sc && nr != NR_accept && nr != NR_accept4 && nr != NR_connect && nr != NR_close &&
	    nr != NR_listen)
		return 0;

	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tgid = pid_tgid >> 32;

	if (nr == NR_listen) {
		if (ret == 0 && tgid != agent_tgid && (report_listen || is_target(tgid)))
			emit_listen(SC_ARG1(regs), pid_tgid);
		return 0;
	}
	/* Failed or empty transfers (EAGAIN after an edge-triggered read loop)
	 * leave before the target lookup. */
	if (sc != 0 && ret <= 0)
		return 0;
	if (!is_target(tgid))
		return 0;
	/* A peek (nginx looks at the first byte to tell TLS from plain HTTP)
	 * leaves the bytes to a later read: reporting them would count them
	 * twice. */
	if ((nr == NR_recvfrom && (SC_ARG4(regs) & MSG_PEEK)) ||
	    (nr == NR_recvmsg && (SC_ARG3(regs) & MSG_PEEK)))
		return 0;

	switch (nr) {
	case NR_accept:
	case NR_accept4:
		if (ret >= 0)
			emit_conn(ret, RT_ORIGIN_ACCEPT, pid_tgid);
		return 0;
	case NR_connect:
		if (ret == 0 || ret == -EINPROGRESS)
			emit_conn(SC_ARG1(regs), RT_ORIGIN_CONNECT, pid_tgid);
		return 0;
	case NR_close:
		if (ret == 0)
			emit_close(SC_ARG1(regs), pid_tgid);
		return 0;
	}
	emit_data(regs, ret, sc, dir, pid_tgid);
	return 0;
}

/* One program on raw_syscalls:sys_exit: every syscall on the host enters
 * it and leaves at the switch unless it is a socket syscall. */
SEC("tp_btf/sys_exit")
int BPF_PROG(sys_exit, struct pt_regs *regs, long ret)
{
	return handle_exit(regs->orig_ax, ret, regs);
}

/* Alternative (--syscall-hooks per-syscall): one program per socket
 * syscall on syscalls:sys_exit_*, so other syscalls never run BPF, at the
 * price of the heavier perf-event tracepoint path per hit. Userspace
 * attaches one set or the other. */
#define SYSCALL_EXIT(tp, nr)                                                      \
	SEC("tracepoint/syscalls/sys_exit_" #tp)                                 \
	int sys_exit_##tp(struct trace_event_raw_sys_exit *ctx)                  \
	{                                                                         \
		struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(        \
			bpf_get_current_task_btf());                              \
		return handle_exit(nr, ctx->ret, regs);                           \
	}

SYSCALL_EXIT(read, NR_read)
SYSCALL_EXIT(write, NR_write)
SYSCALL_EXIT(readv, NR_readv)
SYSCALL_EXIT(writev, NR_writev)
SYSCALL_EXIT(recvfrom, NR_recvfrom)
SYSCALL_EXIT(sendto, NR_sendto)
SYSCALL_EXIT(recvmsg, NR_recvmsg)
SYSCALL_EXIT(sendmsg, NR_sendmsg)
SYSCALL_EXIT(sendfile64, NR_sendfile)
SYSCALL_EXIT(accept, NR_accept)
SYSCALL_EXIT(accept4, NR_accept4)
SYSCALL_EXIT(connect, NR_connect)
SYSCALL_EXIT(close, NR_close)
SYSCALL_EXIT(listen, NR_listen)

/* ---- Socket hooks (--syscall-hooks socket) ----
 *
 * sock:sock_recv_length and sock:sock_send_length fire inside
 * sock_recvmsg()/sock_sendmsg() with the socket and the byte count, and
 * sock:inet_sock_set_state at TCP state changes. No syscall tracepoint is
 * enabled, so syscalls that are not socket I/O run no BPF and skip the
 * traced-syscall slow path that any syscall tracepoint puts every task on;
 * the socket comes without an fd-table walk. The syscall and its
 * arguments (the user buffer, the fd) come from the task's saved user
 * registers, as the hooks run inside it. */

#define PF_KTHREAD 0x00200000

/* The saved user registers of the current task, or NULL for a kernel
 * thread (its sockets are the kernel's own: NFS, iSCSI). */
static __always_inline struct pt_regs *user_regs(void)
{
	struct task_struct *task = bpf_get_current_task_btf();
	if (task->flags & PF_KTHREAD)
		return NULL;
	return (struct pt_regs *)bpf_task_pt_regs(task);
}

static __always_inline int on_sock_io(struct sock *sk, int ret, int flags, __u8 dir)
{
	/* Failed or empty transfers (EAGAIN) leave first. */
	if (ret <= 0)
		return 0;
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	if (!is_target(pid_tgid >> 32))
		return 0;
	/* A peek leaves the bytes to a later read (see handle_exit). */
	if (flags & MSG_PEEK)
		return 0;
	if (!sk || !is_tcp(sk))
		return 0;
	struct pt_regs *regs = user_regs();
	if (!regs)
		return 0;
	/* sendfile: each chunk it splices into the socket is one call. */
	__u8 sc_dir;
	__u8 sc = data_syscall(regs->orig_ax, &sc_dir);
	if (!sc || sc_dir != dir) {
		/* io_uring, recvmmsg/sendmmsg, splice...: no user buffer or fd
		 * to read from these registers. */
		stat_inc(RT_STAT_UNDECODED_IO);
		return 0;
	}
	__u32 fd = (__u32)SC_ARG1(regs);
	emit_sock_data(regs, sk, fd, ret, sc, dir, pid_tgid, true);
	return 0;
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(sock_recv_length, struct sock *sk, int ret, int flags)
{
	return on_sock_io(sk, ret, flags, RT_DIR_INGRESS);
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(sock_send_length, struct sock *sk, int ret, int flags)
{
	return on_sock_io(sk, ret, 0, RT_DIR_EGRESS);
}

/* connect() (-> SYN_SENT), listen() (-> LISTEN) and close() (any other
 * change: ESTABLISHED -> FIN_WAIT1, CLOSE_WAIT -> LAST_ACK, a reset with
 * unread data -> CLOSE, FIN_WAIT2 -> TIME_WAIT...) change the state inside
 * the syscall, in the process: the syscall number tells them apart from
 * the changes the network makes in softirq context (on top of whichever
 * task runs). */
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(sock_state, struct sock *sk, int oldstate, int newstate)
{
	if (sk->sk_protocol != IPPROTO_TCP)
		return 0; /* the tracepoint serves SCTP and MPTCP too */
	long nr = newstate == TCP_SYN_SENT ? NR_connect : newstate == TCP_LISTEN ? NR_listen : NR_close;
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tgid = pid_tgid >> 32;
	if (tgid == agent_tgid)
		return 0;
	if (nr == NR_listen ? !(report_listen || is_target(tgid)) : !is_target(tgid))
		return 0;
	struct pt_regs *regs = user_regs();
	if (!regs || regs->orig_ax != nr)
		return 0;
	long fd = SC_ARG1(regs);
	if (nr == NR_connect && inject)
		inject_mark(sk);
	if (nr == NR_connect)
		emit_conn_sk(sk, fd, RT_ORIGIN_CONNECT, pid_tgid);
	else if (nr == NR_listen)
		emit_listen_sk(sk, fd, pid_tgid);
	else
		emit_close_record((__u64)sk, fd, pid_tgid);
	return 0;
}

/* close() of a socket already in state CLOSE (the peer's reset, or the
 * last ACK of a shutdown() arrived first) changes no state: the socket is
 * destroyed inside the call instead. */
SEC("tp_btf/tcp_destroy_sock")
int BPF_PROG(sock_destroy, struct sock *sk)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	if (!is_target(pid_tgid >> 32))
		return 0;
	struct pt_regs *regs = user_regs();
	if (!regs || regs->orig_ax != NR_close)
		return 0;
	emit_close_record((__u64)sk, SC_ARG1(regs), pid_tgid);
	return 0;
}

/* ---- TLS: OpenSSL uprobes ---- */

static __always_inline int tls_enter(void *ssl, const void *buf, __u64 len_ptr)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();

	if (!is_target(pid_tgid >> 32))
		return 0;
	tls_proc_mark(pid_tgid >> 32);
	struct tls_call c = { .ssl = (__u64)ssl, .buf = (__u64)buf, .len_ptr = len_ptr };
	bpf_map_update_elem(&tls_calls, &pid_tgid, &c, BPF_ANY);
	return 0;
}

/* The socket of a returning SSL call: the one its own syscalls used, else
 * the cached one for its SSL* if the fd still holds it, else the last TLS
 * socket the thread read. Learned answers are cached. */
static __always_inline bool tls_socket(struct tls_call *c, __u64 pid_tgid, struct sock_fd *out)
{
	struct ssl_key key = { .tgid = pid_tgid >> 32, .ssl = c->ssl };

	if (c->sock) {
		out->sock = c->sock;
		out->fd = c->fd;
		bpf_map_update_elem(&ssl_socks, &key, out, BPF_ANY);
		return true;
	}
	struct sock_fd *known = bpf_map_lookup_elem(&ssl_socks, &key);
	if (known && (__u64)tcp_sock_of_fd(known->fd) == known->sock) {
		*out = *known;
		return true;
	}
	struct sock_fd *last = bpf_map_lookup_elem(&tls_last, &pid_tgid);
	if (last && (__u64)tcp_sock_of_fd(last->fd) == last->sock) {
		*out = *last;
		bpf_map_update_elem(&ssl_socks, &key, out, BPF_ANY);
		__u8 one = 1;
		bpf_map_update_elem(&tls_socks, &out->sock, &one, BPF_ANY);
		return true;
	}
	return false;
}

/* A TLS plaintext record of `n` bytes at user address `ubuf` for the
 * socket `sf` (shared by the OpenSSL and Go probes). */
static __always_inline void emit_plain(__u64 pid_tgid, struct sock_fd *sf, __u64 ubuf, __u64 n, __u8 sc,
				       __u8 dir)
{
	struct sock *sk = bpf_core_cast((void *)sf->sock, struct sock);
	remember_fd(pid_tgid, sf->fd, (struct sock *)sf->sock);

	__u32 zero = 0;
	struct scratch_buf *buf = bpf_map_lookup_elem(&scratch, &zero);
	if (!buf)
		return;
	struct rt_data_event *ev = &buf->ev;
	fill_header(&ev->hdr, RT_EV_DATA, pid_tgid);
	ev->sock_id = sf->sock;
	ev->len = n;
	ev->fd = sf->fd;
	ev->direction = dir;
	ev->syscall = sc;
	ev->flags = RT_DATA_TLS;
	ev->chunks = 0;
	ev->ctx = RT_CTX_NONE;
	ev->has_parent = 0;
	ev->queued_ns = 0;
	read_tuple(sk, &ev->tuple);

	__u32 want = capture_bytes;
	if (want > RT_MAX_CAPTURE)
		want = RT_MAX_CAPTURE;
	if (n < want)
		want = n;
	__u32 got = 0;
	if (want > 0) {
		if (bpf_probe_read_user(ev->data, want & (RT_MAX_CAPTURE - 1) ?: RT_MAX_CAPTURE, (void *)ubuf))
			stat_inc(RT_STAT_READ_FAULTS);
		else
			got = want;
	}
	if ((__u64)got < n)
		stat_inc(RT_STAT_TRUNCATED);
	ev->captured = got;
	send_data(ev, got);
}

/* At return: `ret` is the function's return value; `ex` the _ex form
 * (returns 1 and stores the length through len_ptr). */
static __always_inline int tls_exit(long ret, bool ex, __u8 sc, __u8 dir)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct tls_call *cp = bpf_map_lookup_elem(&tls_calls, &pid_tgid);
	if (!cp)
		return 0;
	struct tls_call c = *cp;
	bpf_map_delete_elem(&tls_calls, &pid_tgid);

	__u64 n = 0;
	if (ex) {
		if (ret != 1 || !c.len_ptr || bpf_probe_read_user(&n, sizeof(n), (void *)c.len_ptr))
			return 0;
	} else {
		if (ret <= 0)
			return 0;
		n = ret;
	}
	if (n == 0)
		return 0;

	struct sock_fd sf;
	if (!tls_socket(&c, pid_tgid, &sf)) {
		stat_inc(RT_STAT_TLS_NO_SOCKET);
		return 0;
	}
	emit_plain(pid_tgid, &sf, c.buf, n, sc, dir);
	return 0;
}

/* int SSL_read(SSL *ssl, void *buf, int num) */
SEC("uprobe")
int BPF_UPROBE(ssl_read, void *ssl, void *buf)
{
	stat_inc(RT_STAT_UPROBE_SSL_READ);
	return tls_enter(ssl, buf, 0);
}

SEC("uretprobe")
int BPF_URETPROBE(ssl_read_ret, int ret)
{
	stat_inc(RT_STAT_URETPROBE_SSL_READ);
	return tls_exit(ret, false, RT_SYS_SSL_READ, RT_DIR_INGRESS);
}

/* int SSL_read_ex(SSL *ssl, void *buf, size_t num, size_t *readbytes) */
SEC("uprobe")
int BPF_UPROBE(ssl_read_ex, void *ssl, void *buf, __u64 num, __u64 *readbytes)
{
	stat_inc(RT_STAT_UPROBE_SSL_READ_EX);
	return tls_enter(ssl, buf, (__u64)readbytes);
}

SEC("uretprobe")
int BPF_URETPROBE(ssl_read_ex_ret, int ret)
{
	stat_inc(RT_STAT_URETPROBE_SSL_READ_EX);
	return tls_exit(ret, true, RT_SYS_SSL_READ, RT_DIR_INGRESS);
}

/* int SSL_write(SSL *ssl, const void *buf, int num) */
SEC("uprobe")
int BPF_UPROBE(ssl_write, void *ssl, const void *buf)
{
	stat_inc(RT_STAT_UPROBE_SSL_WRITE);
	return tls_enter(ssl, buf, 0);
}

SEC("uretprobe")
int BPF_URETPROBE(ssl_write_ret, int ret)
{
	stat_inc(RT_STAT_URETPROBE_SSL_WRITE);
	return tls_exit(ret, false, RT_SYS_SSL_WRITE, RT_DIR_EGRESS);
}

/* int SSL_write_ex(SSL *s, const void *buf, size_t num, size_t *written) */
SEC("uprobe")
int BPF_UPROBE(ssl_write_ex, void *ssl, const void *buf, __u64 num, __u64 *written)
{
	stat_inc(RT_STAT_UPROBE_SSL_WRITE_EX);
	return tls_enter(ssl, buf, (__u64)written);
}

SEC("uretprobe")
int BPF_URETPROBE(ssl_write_ex_ret, int ret)
{
	stat_inc(RT_STAT_URETPROBE_SSL_WRITE_EX);
	return tls_exit(ret, true, RT_SYS_SSL_WRITE, RT_DIR_EGRESS);
}

/* void SSL_set0_rbio(SSL *s, BIO *rbio), at entry: once per connection.
 * SSL_set_fd and SSL_set_bio call it (with a socket BIO whose fd is
 * already set, or asyncio's memory BIOs); curl calls it with its own BIO.
 * The cookie is the library's index in ssl_layouts. */
static __always_inline int on_set_rbio(struct pt_regs *ctx, void *ssl, void *rbio_arg)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tgid = pid_tgid >> 32;
	__u64 rbio = (__u64)rbio_arg;
	if (!is_target(tgid) || !ssl || !rbio)
		return 0;
	tls_proc_mark(tgid);
	__u32 idx = bpf_get_attach_cookie(ctx);
	struct rt_ssl_layout *l = bpf_map_lookup_elem(&ssl_layouts, &idx);
	if (!l || !l->valid)
		return 0;
	struct tls_keysock ks = { .ssl = (__u64)ssl, .layout = idx };
	bpf_probe_read_user(&ks.stale, sizeof(ks.stale), ssl + l->ssl_client_app_secret);
	__u64 method = 0;
	__s32 type = 0, fd = -1;
	if (bpf_probe_read_user(&method, sizeof(method), (void *)(rbio + l->bio_method)) || !method ||
	    bpf_probe_read_user(&type, sizeof(type), (void *)(method + l->bio_method_type))) {
		stat_inc(RT_STAT_TLS_KEYS_FAULT);
		return 0;
	}
	if (type != (__s32)l->bio_type_socket) {
		/* Memory or custom BIOs (asyncio, curl): no fd to follow; the
		 * connection is the one whose ClientHello carries this object's
		 * random (tls_hello, tls_bind). */
		stat_inc(RT_STAT_TLS_NOT_SOCKET_BIO);
		if (l->client_random == RT_SSL_NO_OFFSET)
			return 0;
		struct tls_pending *p = bpf_map_lookup_elem(&tls_pending, &tgid);
		if (!p) {
			__u32 zero = 0;
			struct tls_pending *z = bpf_map_lookup_elem(&tls_pending_zero, &zero);
			if (!z || bpf_map_update_elem(&tls_pending, &tgid, z, BPF_NOEXIST))
				return 0;
			p = bpf_map_lookup_elem(&tls_pending, &tgid);
			if (!p)
				return 0;
			struct rt_tls_memory_bio_event *ev =
				ctrl_reserve(sizeof(*ev), RT_EV_TLS_MEMORY_BIO, pid_tgid);
			if (ev) {
				ev->layout = idx;
				ctrl_submit(ev, BPF_RB_FORCE_WAKEUP);
			}
		}
		/* Not atomic (the fetching add needs BPF ISA v3): two threads of a
		 * process may take the same slot, and one connection is then
		 * counted as unmatched. */
		__u32 i = p->next++ & (RT_TLS_PENDING_SLOTS - 1);
		p->ssl[i] = ks.ssl;
		p->stale[i] = ks.stale;
		p->layout[i] = idx;
		return 0;
	}
	if (bpf_probe_read_user(&fd, sizeof(fd), (void *)(rbio + l->bio_num)) || fd < 0) {
		stat_inc(RT_STAT_TLS_KEYS_FAULT);
		return 0;
	}
	struct sock *sk = tcp_sock_of_fd(fd);
	if (!sk)
		return 0;
	keysock_set((__u64)sk, &ks);
	return 0;
}

SEC("uprobe")
int BPF_UPROBE(ssl_set0_rbio, void *ssl, void *rbio)
{
	stat_inc(RT_STAT_UPROBE_SSL_SET0_RBIO);
	return on_set_rbio(ctx, ssl, rbio);
}

/* void SSL_set_bio(SSL *s, BIO *rbio, BIO *wbio): the same, for OpenSSL
 * linked into an executable, where SSL_set_bio may inline SSL_set0_rbio
 * (Node's does). */
SEC("uprobe")
int BPF_UPROBE(ssl_set_bio, void *ssl, void *rbio)
{
	stat_inc(RT_STAT_UPROBE_SSL_SET_BIO);
	return on_set_rbio(ctx, ssl, rbio);
}

/* ---- TLS: Go crypto/tls ----
 *
 * (*tls.Conn).Write is probed at entry only: with Go's register ABI
 * (1.17+) the receiver is in RAX and the plaintext slice in RBX (pointer)
 * and RCX (length), so one trap gives the whole write. (*tls.Conn).Read is
 * probed at entry (buffer saved) and at each of its RET instructions (n in
 * RAX): never with a uretprobe, because the Go runtime moves goroutine
 * stacks and walks return addresses, and a hijacked one crashes the
 * program. The call is keyed by (tgid, goroutine): `g` is in R14 in Go
 * code, and a goroutine blocked in Read may resume on another thread.
 *
 * The socket comes from the connection itself, not from the thread's
 * syscalls: tls.Conn.conn (a net.Conn: itab, data) -> *net.TCPConn ->
 * fd *netFD -> pfd.Sysfd, at offsets userspace packs into the attach
 * cookie (DWARF or a table by Go version), then the fd table gives the
 * struct sock. Marking it in tls_socks at the call's entry keeps its
 * ciphertext out (the handshake done inside Read included). */
struct go_key {
	__u32 tgid;
	__u32 _pad;
	__u64 g;
};

struct go_read {
	__u64 buf;
	struct sock_fd sf;	/* sock 0: not found at entry */
};

/* (tgid, goroutine) -> its Read in progress. LRU: a Read whose return is
 * never seen (panic) is overwritten at the goroutine's next Read or ages
 * out. Sized with sock_fds by userspace (one blocked Read per idle
 * keep-alive connection). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct go_key);
	__type(value, struct go_read);
} go_reads SEC(".maps");

/* The TCP socket behind a *tls.Conn, following the cookie's offsets:
 * bits 0-15 tls.Conn -> interface data pointer, 16-31 TCPConn -> *netFD,
 * 32-47 netFD -> Sysfd. A conn that is not a *net.TCPConn yields an fd
 * that is checked against the fd table like any other. */
static __always_inline bool go_conn_sock(__u64 conn, __u64 layout, struct sock_fd *out)
{
	__u64 data = 0, netfd = 0;
	__s64 sysfd = -1;

	if (bpf_probe_read_user(&data, sizeof(data), (void *)(conn + (layout & 0xffff))) || !data)
		return false;
	if (bpf_probe_read_user(&netfd, sizeof(netfd), (void *)(data + ((layout >> 16) & 0xffff))) || !netfd)
		return false;
	if (bpf_probe_read_user(&sysfd, sizeof(sysfd), (void *)(netfd + ((layout >> 32) & 0xffff))))
		return false;
	if (sysfd < 0 || sysfd > 0x7fffffff)
		return false;
	struct sock *sk = tcp_sock_of_fd(sysfd);
	if (!sk)
		return false;
	out->sock = (__u64)sk;
	out->fd = sysfd;
	tls_proc_mark(bpf_get_current_pid_tgid() >> 32);
	__u8 one = 1;
	bpf_map_update_elem(&tls_socks, &out->sock, &one, BPF_ANY);
	return true;
}

/* func (c *Conn) Write(b []byte) (int, error), at entry. */
SEC("uprobe")
int go_tls_write(struct pt_regs *ctx)
{
	stat_inc(RT_STAT_UPROBE_GO_TLS_WRITE);
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	if (!is_target(pid_tgid >> 32))
		return 0;
	__s64 len = ctx->cx;
	if (len <= 0)
		return 0;
	struct sock_fd sf = {};
	if (!go_conn_sock(ctx->ax, bpf_get_attach_cookie(ctx), &sf)) {
		stat_inc(RT_STAT_TLS_NO_SOCKET);
		return 0;
	}
	emit_plain(pid_tgid, &sf, ctx->bx, len, RT_SYS_GO_TLS_WRITE, RT_DIR_EGRESS);
	return 0;
}

/* func (c *Conn) Read(b []byte) (int, error), at entry. */
SEC("uprobe")
int go_tls_read(struct pt_regs *ctx)
{
	stat_inc(RT_STAT_UPROBE_GO_TLS_READ);
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	if (!is_target(pid_tgid >> 32))
		return 0;
	struct go_key key = { .tgid = pid_tgid >> 32, .g = ctx->r14 };
	struct go_read r = { .buf = ctx->bx };
	go_conn_sock(ctx->ax, bpf_get_attach_cookie(ctx), &r.sf);
	bpf_map_update_elem(&go_reads, &key, &r, BPF_ANY);
	return 0;
}

/* At each RET of (*tls.Conn).Read: n in RAX. */
SEC("uprobe")
int go_tls_read_ret(struct pt_regs *ctx)
{
	stat_inc(RT_STAT_UPROBE_GO_TLS_READ_RET);
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct go_key key = { .tgid = pid_tgid >> 32, .g = ctx->r14 };
	struct go_read *rp = bpf_map_lookup_elem(&go_reads, &key);
	if (!rp)
		return 0;
	struct go_read r = *rp;
	bpf_map_delete_elem(&go_reads, &key);
	__s64 n = ctx->ax;
	if (n <= 0)
		return 0;
	if (!r.sf.sock) {
		stat_inc(RT_STAT_TLS_NO_SOCKET);
		return 0;
	}
	emit_plain(pid_tgid, &r.sf, r.buf, n, RT_SYS_GO_TLS_READ, RT_DIR_INGRESS);
	return 0;
}

/* Children of traced processes are traced from their first instruction
 * (nginx workers, pre-fork servers); userspace re-checks them at exec. */
SEC("tp_btf/sched_process_fork")
int BPF_PROG(sched_process_fork, struct task_struct *parent, struct task_struct *child)
{
	__u32 ptgid = BPF_CORE_READ(parent, tgid);
	__u32 ctgid = BPF_CORE_READ(child, tgid);

	if (ptgid == ctgid)
		return 0; /* a new thread */
	if (tls_capture && bpf_map_lookup_elem(&tls_procs, &ptgid))
		tls_proc_mark(ctgid);
	if (trace_all)
		return 0; /* everything is traced anyway */
	if (!bpf_map_lookup_elem(&targets, &ptgid))
		return 0;
	struct rt_target t = { .inherited = 1 };
	if (bpf_map_update_elem(&targets, &ctgid, &t, BPF_NOEXIST) == -7 /* E2BIG */)
		stat_inc(RT_STAT_TARGETS_FULL);
	return 0;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(sched_process_exec, struct task_struct *task, pid_t old_pid, struct linux_binprm *bprm)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tgid = pid_tgid >> 32;

	if (tgid == agent_tgid)
		return 0;
	if (trace_new_execs && !trace_all) {
		struct rt_target t = { .inherited = 1 };
		if (bpf_map_update_elem(&targets, &tgid, &t, BPF_ANY) == -7 /* E2BIG */)
			stat_inc(RT_STAT_TARGETS_FULL);
	}
	struct rt_proc_event *ev = ctrl_reserve(sizeof(*ev), RT_EV_EXEC, pid_tgid);
	if (!ev)
		return 0;
	ev->ppid = BPF_CORE_READ(task, real_parent, tgid);
	bpf_get_current_comm(ev->comm, sizeof(ev->comm));
	bpf_probe_read_kernel_str(ev->filename, sizeof(ev->filename), BPF_CORE_READ(bprm, filename));
	ctrl_submit(ev, BPF_RB_FORCE_WAKEUP);
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(sched_process_exit, struct task_struct *task)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	/* Per thread: an SSL call that never returned (thread killed inside
	 * SSL_read) must not make a later thread with a reused id look like
	 * it is inside one, which would hide its syscalls as ciphertext. */
	if (tls_capture) {
		bpf_map_delete_elem(&tls_calls, &pid_tgid);
		bpf_map_delete_elem(&tls_last, &pid_tgid);
	}
	/* The rest only when the whole thread group is gone. */
	if (BPF_CORE_READ(task, signal, live.counter) != 0)
		return 0;
	__u32 tgid = pid_tgid >> 32;
	bool traced = is_target(tgid);

	bpf_map_delete_elem(&targets, &tgid);
	if (tls_capture) {
		bpf_map_delete_elem(&tls_pending, &tgid);
		bpf_map_delete_elem(&tls_procs, &tgid);
	}
	if (!traced)
		return 0;
	struct rt_proc_event *ev = ctrl_reserve(sizeof(*ev), RT_EV_EXIT, pid_tgid);
	if (!ev)
		return 0;
	bpf_get_current_comm(ev->comm, sizeof(ev->comm));
	ctrl_submit(ev, rb_flags());
	return 0;
}
