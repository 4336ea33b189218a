/* The live-migration stream: hellos, sections, HMAC-SHA256 tags (OpenSSL's
 * libcrypto) and zstd page sections. The format is in migrate_stream.h. */
#include "vm/migrate_stream.h"
#include "vm/postcopy.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <zstd.h>

#define SOFTWARE "cvisor 0.1.0"
#define LABEL "cvisor live migration v2 session key"
#define CONFIG_MAX (1ULL << 20)
#define STATE_MAX (256ULL << 20)
#define ANSWER_MAX 512
#define ZSTD_LEVEL 1 /* fast: the CPU is the guest's too */

/* ------------------------------------------------------------ socket I/O */

static int send_all(int fd, const void *p, size_t n, int flags)
{
	const uint8_t *b = p;
	while (n) {
		ssize_t w = send(fd, b, n, MSG_NOSIGNAL | flags);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return -ETIMEDOUT; /* SO_SNDTIMEO */
		if (w <= 0)
			return w < 0 ? -errno : -EPIPE;
		b += w;
		n -= (size_t)w;
	}
	return 0;
}

static int recv_all(int fd, void *p, size_t n)
{
	uint8_t *b = p;
	while (n) {
		ssize_t r = recv(fd, b, n, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return -ETIMEDOUT; /* SO_RCVTIMEO */
		if (r <= 0)
			return r < 0 ? -errno : -ECONNRESET;
		b += r;
		n -= (size_t)r;
	}
	return 0;
}

void mstream_init(struct mstream *s, int fd, enum ms_role role)
{
	memset(s, 0, sizeof(*s));
	s->fd = fd;
	s->role = role;
}

void mstream_close(struct mstream *s)
{
	EVP_MAC_CTX_free(s->mctx);
	EVP_MAC_free(s->mac);
	ZSTD_freeCCtx(s->cctx);
	ZSTD_freeDCtx(s->dctx);
	free(s->zbuf);
	free(s->rbuf);
	OPENSSL_cleanse(s->skey, sizeof(s->skey));
	if (s->fd >= 0)
		close(s->fd);
	mstream_init(s, -1, s->role);
}

/* ------------------------------------------------------------ the key */

int mstream_key_load(const char *path, uint8_t *key, size_t *keylen, char *err, size_t errlen)
{
	struct stat st;
	uint8_t buf[MS_KEY_MAX + 3];
	size_t n = 0;
	int rc = 0, fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0 || fstat(fd, &st) < 0) {
		rc = -errno;
		snprintf(err, errlen, "key file %s: %s", path, strerror(-rc));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = -EINVAL;
		snprintf(err, errlen, "key file %s is not a regular file", path);
		goto out;
	}
	if (st.st_mode & (S_IRWXG | S_IRWXO)) {
		rc = -EINVAL;
		snprintf(err, errlen, "key file %s is open to other users (chmod 600 it)", path);
		goto out;
	}
	while (n < sizeof(buf)) {
		ssize_t r = read(fd, buf + n, sizeof(buf) - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			rc = -errno;
			snprintf(err, errlen, "key file %s: %s", path, strerror(-rc));
			goto out;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	if (n && buf[n - 1] == '\n') /* a key written with echo works on both sides */
		n--;
	if (n && buf[n - 1] == '\r')
		n--;
	if (n < MS_KEY_MIN || n > MS_KEY_MAX) {
		rc = -EINVAL;
		snprintf(err, errlen, "key file %s: a key is %d to %d bytes (e.g. head -c 32 /dev/urandom)",
		         path, MS_KEY_MIN, MS_KEY_MAX);
		goto out;
	}
	memcpy(key, buf, n);
	*keylen = n;
out:
	OPENSSL_cleanse(buf, sizeof(buf));
	if (fd >= 0)
		close(fd);
	return rc;
}

/* ------------------------------------------------------------ HMAC */

/* HMAC-SHA256 over the concatenation of n parts. */
static int hmac(struct mstream *s, const uint8_t *key, size_t keylen, const void *const *parts,
                const size_t *lens, int n, uint8_t out[MS_TAG_LEN])
{
	char digest[] = "SHA256";
	OSSL_PARAM params[] = {
		OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
		OSSL_PARAM_construct_end(),
	};
	size_t outlen = 0;

	if (!s->mac && !(s->mac = EVP_MAC_fetch(NULL, "HMAC", NULL)))
		return -ENOTSUP;
	if (!s->mctx && !(s->mctx = EVP_MAC_CTX_new(s->mac)))
		return -ENOMEM;
	if (!EVP_MAC_init(s->mctx, key, keylen, params))
		return -EIO;
	for (int i = 0; i < n; i++) {
		if (lens[i] && !EVP_MAC_update(s->mctx, parts[i], lens[i]))
			return -EIO;
	}
	if (!EVP_MAC_final(s->mctx, out, &outlen, MS_TAG_LEN) || outlen != MS_TAG_LEN)
		return -EIO;
	return 0;
}

/* The tag of one section: direction, sequence number, header, payload. */
static int section_tag(struct mstream *s, bool outgoing, const uint8_t hdr[12], const void *p,
                       uint64_t len, uint8_t tag[MS_TAG_LEN])
{
	bool from_source = (s->role == MS_SOURCE) == outgoing;
	uint8_t pre[9];
	uint64_t seq = outgoing ? s->seq_out : s->seq_in;

	pre[0] = from_source ? 'S' : 'D';
	memcpy(pre + 1, &seq, 8);
	const void *parts[] = { pre, hdr, p };
	const size_t lens[] = { sizeof(pre), 12, len };
	return hmac(s, s->skey, sizeof(s->skey), parts, lens, 3, tag);
}

/* ------------------------------------------------------------ hellos */

static int hello_build(struct mstream *s, bool keyed, uint8_t h[MS_HELLO_LEN])
{
	memset(h, 0, MS_HELLO_LEN);
	memcpy(h, MS_MAGIC, 8);
	h[8] = MS_VERSION;
	h[9] = (uint8_t)((keyed ? MS_HELLO_MAC : 0) | (s->role == MS_DEST ? MS_HELLO_DEST : 0));
	memcpy(h + 12, SOFTWARE, strlen(SOFTWARE));
	if (getrandom(h + 28, MS_NONCE_LEN, 0) != MS_NONCE_LEN)
		return -EIO;
	return 0;
}

static int hello_check(struct mstream *s, bool keyed, const uint8_t h[28], char *err,
                       size_t errlen)
{
	bool from_dest = h[9] & MS_HELLO_DEST, peer_keyed = h[9] & MS_HELLO_MAC;
	bool src = s->role == MS_SOURCE;

	if (memcmp(h, MS_MAGIC, 8)) {
		snprintf(err, errlen, "the peer is not a cvisor migration %s",
		         src ? "destination" : "source");
		return -EPROTO;
	}
	if (h[8] != MS_VERSION) {
		snprintf(err, errlen, "the peer speaks migration stream version %u, this cvisor %u",
		         h[8], MS_VERSION);
		return -EPROTO;
	}
	if (from_dest != src || (h[9] & ~(MS_HELLO_MAC | MS_HELLO_DEST))) {
		snprintf(err, errlen, "the peer is not a migration %s", src ? "destination" : "source");
		return -EPROTO;
	}
	if (peer_keyed == keyed)
		return 0;
	if (src)
		snprintf(err, errlen, keyed ? "the destination has no key (start it with --migrate-key-file)"
		                            : "the destination requires a key (give key_file)");
	else
		snprintf(err, errlen, keyed ? "the source sent no key (give the migration a key_file)"
		                            : "the source uses a key; this side has none (--migrate-key-file)");
	return -EPERM;
}

int mstream_handshake(struct mstream *s, const uint8_t *psk, size_t psklen, char *err,
                      size_t errlen)
{
	uint8_t mine[MS_HELLO_LEN], peer[MS_HELLO_LEN];
	bool keyed = psk != NULL;
	int rc;

	if ((rc = hello_build(s, keyed, mine))) {
		snprintf(err, errlen, "no random numbers for the hello");
		return rc;
	}
	if ((rc = send_all(s->fd, mine, sizeof(mine), 0))) {
		snprintf(err, errlen, "sending the hello: %s", strerror(-rc));
		return rc;
	}
	s->bytes_out += sizeof(mine);
	/* the fixed part first: a peer of another version may send less */
	if ((rc = recv_all(s->fd, peer, 28))) {
		snprintf(err, errlen, "the peer closed the connection before its hello (%s)",
		         strerror(-rc));
		return rc;
	}
	if ((rc = hello_check(s, keyed, peer, err, errlen)))
		return rc;
	if ((rc = recv_all(s->fd, peer + 28, MS_NONCE_LEN))) {
		snprintf(err, errlen, "the peer's hello is truncated (%s)", strerror(-rc));
		return rc;
	}
	if (!keyed)
		return 0;
	/* the session key binds both hellos: both nonces, versions and flags */
	const uint8_t *src = s->role == MS_SOURCE ? mine : peer;
	const uint8_t *dst = s->role == MS_SOURCE ? peer : mine;
	const void *parts[] = { LABEL, src, dst };
	const size_t lens[] = { strlen(LABEL), MS_HELLO_LEN, MS_HELLO_LEN };
	if ((rc = hmac(s, psk, psklen, parts, lens, 3, s->skey))) {
		snprintf(err, errlen, "HMAC-SHA256 is not available from libcrypto");
		return rc;
	}
	s->keyed = true;
	return 0;
}

/* ------------------------------------------------------------ sections */

uint64_t mstream_max_len(uint32_t type)
{
	switch (type) {
	case MS_CONFIG: return CONFIG_MAX;
	case MS_RAM: return MS_RAM_MAX;
	case MS_RAM_ZSTD: return MS_RAM_MAX; /* only sent when smaller than the plain one */
	case MS_STATE: return STATE_MAX;
	case MS_DONE: return 0;
	case MS_ANSWER: return ANSWER_MAX;
	case MS_PC_ADVISE: return 0;
	case MS_PC_OWED: return PC_OWED_LEN_MAX;
	case MS_PC_REQ: return PC_REQ_LEN_MAX;
	case MS_PC_END: return 0;
	default: return UINT64_MAX;
	}
}

int mstream_send(struct mstream *s, uint32_t type, const void *p, uint64_t len)
{
	uint8_t hdr[12], tag[MS_TAG_LEN];
	int rc;

	memcpy(hdr, &type, 4);
	memcpy(hdr + 4, &len, 8);
	if (s->keyed && (rc = section_tag(s, true, hdr, p, len, tag)))
		return rc;
	if ((rc = send_all(s->fd, hdr, sizeof(hdr), MSG_MORE)))
		return rc;
	if ((rc = send_all(s->fd, p, len, s->keyed ? MSG_MORE : 0)))
		return rc;
	if (s->keyed && (rc = send_all(s->fd, tag, sizeof(tag), 0)))
		return rc;
	s->seq_out++;
	s->bytes_out += sizeof(hdr) + len + (s->keyed ? sizeof(tag) : 0);
	return 0;
}

int mstream_send_ram(struct mstream *s, const void *p, size_t len, uint32_t records,
                     uint32_t data_pages, bool compress)
{
	if (len > MS_RAM_MAX)
		return -EMSGSIZE;
	if (compress && data_pages) {
		if (!s->cctx && !(s->cctx = ZSTD_createCCtx()))
			return -ENOMEM;
		if (!s->zbuf && !(s->zbuf = malloc(8 + MS_RAM_MAX)))
			return -ENOMEM;
		size_t n = ZSTD_compressCCtx(s->cctx, s->zbuf + 8, MS_RAM_MAX, p, len, ZSTD_LEVEL);
		if (!ZSTD_isError(n) && n + 8 < len) {
			memcpy(s->zbuf, &records, 4);
			memcpy(s->zbuf + 4, &data_pages, 4);
			return mstream_send(s, MS_RAM_ZSTD, s->zbuf, n + 8);
		}
		/* incompressible (random data, say): as it is */
	}
	return mstream_send(s, MS_RAM, p, len);
}

int mstream_send_answer(struct mstream *s, char code, const char *reason)
{
	char msg[ANSWER_MAX];
	int n = snprintf(msg, sizeof(msg), "%c%s", code, reason ? reason : "");
	if (n < 0)
		return -EINVAL;
	return mstream_send(s, MS_ANSWER, msg, (size_t)n < sizeof(msg) ? (size_t)n : sizeof(msg) - 1);
}

/* One section; *tag_ok says whether its tag matched (always true unkeyed). */
static int recv_section(struct mstream *s, uint32_t *type, uint8_t **data, uint64_t *len,
                        bool *tag_ok)
{
	uint8_t hdr[12], tag[MS_TAG_LEN], want[MS_TAG_LEN];
	int rc;

	*data = NULL;
	*tag_ok = false;
	if ((rc = recv_all(s->fd, hdr, sizeof(hdr))))
		return rc;
	memcpy(type, hdr, 4);
	memcpy(len, hdr + 4, 8);
	uint64_t max = mstream_max_len(*type);
	/* a type not expected here is refused before anything is allocated for it */
	if (max == UINT64_MAX || (s->expect && (*type >= 32 || !(s->expect & 1u << *type))))
		return -EPROTO;
	if (*len > max)
		return -EMSGSIZE;
	*data = malloc(*len ? *len : 1);
	if (!*data)
		return -ENOMEM;
	if ((rc = recv_all(s->fd, *data, *len)))
		goto fail;
	*tag_ok = true;
	if (s->keyed) {
		if ((rc = recv_all(s->fd, tag, sizeof(tag))) ||
		    (rc = section_tag(s, false, hdr, *data, *len, want)))
			goto fail;
		*tag_ok = CRYPTO_memcmp(tag, want, sizeof(tag)) == 0;
	}
	if (*tag_ok)
		s->seq_in++; /* else it stays the number of the section that failed */
	return 0;
fail:
	free(*data);
	*data = NULL;
	return rc;
}

int mstream_recv(struct mstream *s, uint32_t *type, uint8_t **data, uint64_t *len)
{
	bool ok;
	int rc = recv_section(s, type, data, len, &ok);
	if (rc == 0 && !ok) {
		free(*data);
		*data = NULL;
		return -EBADMSG;
	}
	return rc;
}

int mstream_recv_answer(struct mstream *s, int timeout_ms, char *reason, size_t rlen)
{
	struct pollfd pfd = { .fd = s->fd, .events = POLLIN };
	uint8_t *data;
	uint64_t len;
	uint32_t type;
	bool ok;
	int rc, n;

	reason[0] = '\0';
	while ((n = poll(&pfd, 1, timeout_ms)) < 0 && errno == EINTR)
		;
	if (n < 0)
		return -errno;
	if (n == 0)
		return -ETIMEDOUT;
	if ((rc = recv_section(s, &type, &data, &len, &ok)))
		return rc;
	if (type != MS_ANSWER || len < 1) {
		free(data);
		return -EPROTO;
	}
	size_t k = 0;
	for (uint64_t i = 1; i < len && k + 1 < rlen; i++)
		reason[k++] = data[i] >= 0x20 && data[i] < 0x7f ? (char)data[i] : '?';
	reason[k] = '\0';
	char code = (char)data[0];
	free(data);
	if (!ok)
		return -EBADMSG;
	if (code != 'G' && code != 'A' && code != 'N')
		return -EPROTO;
	return code;
}

/* ------------------------------------------------------------ RAM payloads */

int mstream_ram_apply(const uint8_t *p, uint64_t len, uint8_t *base, uint64_t size,
                      uint32_t *records, uint32_t *data_pages)
{
	uint32_t nrec = 0, npages = 0;

	for (uint64_t i = 0; i < len;) {
		uint64_t rec;
		if (len - i < 8)
			return -EPROTO;
		memcpy(&rec, p + i, 8);
		i += 8;
		uint64_t off = rec & ~(MS_PAGE - 1), flags = rec & (MS_PAGE - 1);
		if ((flags & ~MS_REC_ZERO) || off >= size || size - off < MS_PAGE)
			return -EPROTO;
		if (flags & MS_REC_ZERO) {
			memset(base + off, 0, MS_PAGE);
		} else {
			if (len - i < MS_PAGE)
				return -EPROTO;
			memcpy(base + off, p + i, MS_PAGE);
			i += MS_PAGE;
			npages++;
		}
		nrec++;
	}
	if (records)
		*records = nrec;
	if (data_pages)
		*data_pages = npages;
	return 0;
}

int mstream_ram_zstd_apply(struct mstream *s, const uint8_t *p, uint64_t len, uint8_t *base,
                           uint64_t size)
{
	uint32_t records, pages, r2, p2;

	if (len < 8)
		return -EPROTO;
	memcpy(&records, p, 4);
	memcpy(&pages, p + 4, 4);
	if (records == 0 || records > MS_BATCH || pages > records)
		return -EPROTO;
	/* the size it must decompress to, from the counts: never from the frame */
	size_t want = records * 8 + pages * MS_PAGE;
	if (!s->dctx && !(s->dctx = ZSTD_createDCtx()))
		return -ENOMEM;
	if (!s->rbuf && !(s->rbuf = malloc(MS_RAM_MAX)))
		return -ENOMEM;
	size_t n = ZSTD_decompressDCtx(s->dctx, s->rbuf, want, p + 8, len - 8);
	if (ZSTD_isError(n) || n != want)
		return -EPROTO;
	if (mstream_ram_apply(s->rbuf, n, base, size, &r2, &p2) || r2 != records || p2 != pages)
		return -EPROTO;
	return 0;
}
