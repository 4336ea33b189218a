/* The live-migration stream, without KVM: handshake, section framing, the
 * optional HMAC-SHA256 on every section and zstd-compressed page sections.
 *
 * Both ends first send a hello (MS_HELLO_LEN bytes):
 *   magic "CVMIGR\r\n" | u8 version | u8 flags | u16 0 | "cvisor x.y.z" (16) | nonce (32)
 * flags: MS_HELLO_MAC (this side has a pre-shared key), MS_HELLO_DEST (sent by
 * the destination). Keys on one side only: both sides refuse at once.
 *
 * Then sections, in both directions:
 *   u32 type | u64 length | payload | [32-byte tag when keyed]
 * tag = HMAC-SHA256(session key, direction | u64 sequence | type | length | payload),
 * session key = HMAC-SHA256(pre-shared key, label | source hello | destination hello).
 * Each side picks a fresh random nonce, so a recorded stream does not replay
 * into another connection; the sequence number (one per direction, not on the
 * wire) makes a dropped, repeated or reordered section fail; the direction
 * keeps a section from being reflected back. The stream is not encrypted.
 *
 * Source -> destination: CONFIG, then RAM / RAM_ZSTD any number of times,
 * STATE, DONE. Destination -> source: ANSWER sections, one byte code and
 * maybe a reason: 'G' (configuration accepted: send the memory), 'A' (took
 * over), 'N' + reason (refused; may come at any time, then the connection closes).
 *
 * RAM payload: records { u64 offset | flags, 4 KiB page unless MS_REC_ZERO }.
 * RAM_ZSTD payload: u32 records | u32 pages with data | one zstd frame that
 * decompresses to exactly records * 8 + pages * 4096 bytes of RAM payload.
 *
 * Post-copy adds PC_ADVISE, PC_OWED, PC_REQ and PC_END (vm/postcopy.h); a
 * pre-copy stream never carries them. */
#ifndef CVISOR_VM_MIGRATE_STREAM_H
#define CVISOR_VM_MIGRATE_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MS_MAGIC "CVMIGR\r\n"
#define MS_VERSION 2
#define MS_HELLO_LEN 60
#define MS_NONCE_LEN 32
#define MS_TAG_LEN 32
#define MS_HELLO_MAC 1u
#define MS_HELLO_DEST 2u

#define MS_PAGE 4096ULL
#define MS_REC_ZERO 1ULL
#define MS_BATCH 256 /* pages per RAM section */
#define MS_RAM_MAX (MS_BATCH * (8 + MS_PAGE))
#define MS_KEY_MIN 16
#define MS_KEY_MAX 1024

enum ms_section {
	MS_CONFIG = 1,
	MS_RAM = 2,
	MS_STATE = 3,
	MS_DONE = 4,
	MS_ANSWER = 5,
	MS_RAM_ZSTD = 6,
	/* post-copy (vm/postcopy.h) */
	MS_PC_ADVISE = 7, /* source: this migration ends in post-copy */
	MS_PC_OWED = 8,   /* source: the pages still owed at switch-over */
	MS_PC_REQ = 9,    /* destination: send these pages first */
	MS_PC_END = 10,   /* source: every owed page was sent */
};

enum ms_role { MS_SOURCE, MS_DEST };

struct evp_mac_st;
struct evp_mac_ctx_st;
struct ZSTD_CCtx_s;
struct ZSTD_DCtx_s;

struct mstream {
	int fd;
	enum ms_role role;
	bool keyed;              /* sections carry a tag */
	uint8_t skey[32];        /* session key */
	uint64_t seq_out, seq_in;
	uint64_t bytes_out;      /* on the wire, both sections and hello */
	struct evp_mac_st *mac;
	struct evp_mac_ctx_st *mctx;
	struct ZSTD_CCtx_s *cctx;
	struct ZSTD_DCtx_s *dctx;
	uint8_t *zbuf;           /* compression output, MS_RAM_MAX + 8 */
	uint8_t *rbuf;           /* decompression output, MS_RAM_MAX */
	uint32_t expect;         /* receive: the section types allowed next (bit per type; 0: any) */
};

/* Set up s over a connected socket (taken: mstream_close closes it). */
void mstream_init(struct mstream *s, int fd, enum ms_role role);
/* Free everything, wipe the key, close the socket. */
void mstream_close(struct mstream *s);

/* Read a pre-shared key file: MS_KEY_MIN..MS_KEY_MAX bytes (one trailing
 * newline is dropped), a regular file no other user may read. key has room
 * for MS_KEY_MAX bytes. 0, or -errno with one line in err. */
int mstream_key_load(const char *path, uint8_t *key, size_t *keylen, char *err, size_t errlen);

/* Exchange hellos and derive the session key from psk (NULL: no key).
 * 0, or -errno with one line in err (-EPROTO: not a cvisor peer of this
 * version; -EPERM: a key on one side only). */
int mstream_handshake(struct mstream *s, const uint8_t *psk, size_t psklen, char *err,
                      size_t errlen);

/* Send one section (with its tag when keyed). 0 or -errno. */
int mstream_send(struct mstream *s, uint32_t type, const void *p, uint64_t len);
/* Send a RAM payload of `records` records, `data_pages` of them with a page;
 * zstd-compressed when compress is set and it saves something. 0 or -errno. */
int mstream_send_ram(struct mstream *s, const void *p, size_t len, uint32_t records,
                     uint32_t data_pages, bool compress);
/* Send an ANSWER: code 'G', 'A' or 'N' with a reason (may be NULL). */
int mstream_send_answer(struct mstream *s, char code, const char *reason);

/* Receive one section: its length is checked against the type's limit
 * before anything is allocated, its tag against the session key (compared
 * in constant time). *data is malloc'd (free it). -EPROTO for an unknown
 * type or a length over the limit, -EBADMSG for a tag that does not match,
 * other -errno for the connection. */
int mstream_recv(struct mstream *s, uint32_t *type, uint8_t **data, uint64_t *len);
/* The largest payload a section of this type may have (0 for an unknown type). */
uint64_t mstream_max_len(uint32_t type);

/* Wait up to timeout_ms for an ANSWER. Returns its code ('G', 'A', 'N'),
 * with the reason (made printable) in reason; -ETIMEDOUT, -EPROTO (something
 * else came), -EBADMSG (a tag that does not match: a refusal is still
 * reported in reason, made printable) or -errno. */
int mstream_recv_answer(struct mstream *s, int timeout_ms, char *reason, size_t rlen);

/* Apply a RAM payload to guest memory base[0..size): every record checked
 * (offset page-aligned and inside, known flags, whole page present, nothing
 * left over). Counts what it applied in *records and *data_pages (may be
 * NULL). 0 or -EPROTO. */
int mstream_ram_apply(const uint8_t *p, uint64_t len, uint8_t *base, uint64_t size,
                      uint32_t *records, uint32_t *data_pages);
/* Decompress a RAM_ZSTD payload and apply it as above; the decompressed
 * size and the counts must match its header exactly. 0 or -EPROTO. */
int mstream_ram_zstd_apply(struct mstream *s, const uint8_t *p, uint64_t len, uint8_t *base,
                           uint64_t size);

#endif
