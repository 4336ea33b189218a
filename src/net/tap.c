/* Tap backend: open and configure a tap interface through /dev/net/tun. */
#include "net/tap.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

int tap_open(struct tap *t, const char *name, char *err, size_t errlen)
{
	struct ifreq ifr;
	unsigned int feat = 0;
	int hdr = TAP_VNET_HDR_LEN;
	int fd = -1, rc;

	t->fd = -1;
	t->is_tap = false;
	t->name[0] = '\0';
	if (!name || !*name || strlen(name) >= TAP_NAME_MAX) {
		snprintf(err, errlen, "tap '%s': an interface name is 1 to %d characters",
		         name ? name : "", TAP_NAME_MAX - 1);
		return -EINVAL;
	}
	fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		if (errno == ENOENT || errno == ENODEV || errno == ENXIO)
			snprintf(err, errlen, "tap %s: /dev/net/tun is missing (load the tun module: "
			         "modprobe tun)", name);
		else if (errno == EACCES || errno == EPERM)
			snprintf(err, errlen, "tap %s: no permission to open /dev/net/tun", name);
		else
			snprintf(err, errlen, "tap %s: cannot open /dev/net/tun: %s", name,
			         strerror(errno));
		return rc;
	}
	if (ioctl(fd, TUNGETFEATURES, &feat) == 0 && !(feat & IFF_VNET_HDR)) {
		snprintf(err, errlen, "tap %s: this kernel's tun driver has no IFF_VNET_HDR", name);
		rc = -ENOTSUP;
		goto out;
	}
	if (if_nametoindex(name) == 0) {
		snprintf(err, errlen, "tap %s: no such network interface (create it first: "
		         "ip tuntap add dev %s mode tap, or tunctl -t %s)", name, name, name);
		rc = -ENODEV;
		goto out;
	}
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | IFF_ONE_QUEUE;
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
		rc = -errno;
		if (errno == EPERM || errno == EACCES)
			snprintf(err, errlen, "tap %s: permission denied (cvisor needs CAP_NET_ADMIN, "
			         "or a tap owned by this user: ip tuntap add dev %s mode tap user $USER)",
			         name, name);
		else if (errno == EBUSY)
			snprintf(err, errlen, "tap %s: in use by another process", name);
		else if (errno == EINVAL)
			snprintf(err, errlen, "tap %s: not a single-queue tap interface (a tun, "
			         "multi-queue tap or another kind of device)", name);
		else
			snprintf(err, errlen, "tap %s: TUNSETIFF: %s", name, strerror(errno));
		goto out;
	}
	if (ioctl(fd, TUNSETVNETHDRSZ, &hdr) < 0) {
		rc = -errno;
		snprintf(err, errlen, "tap %s: cannot set the virtio-net header size: %s", name,
		         strerror(errno));
		goto out;
	}
	/* start with no offloads: the tap finishes checksums and segments for us */
	if (ioctl(fd, TUNSETOFFLOAD, 0UL) < 0) {
		rc = -errno;
		snprintf(err, errlen, "tap %s: TUNSETOFFLOAD: %s", name, strerror(errno));
		goto out;
	}
	t->fd = fd;
	t->is_tap = true;
	snprintf(t->name, sizeof(t->name), "%s", name);
	return 0;
out:
	close(fd);
	return rc;
}

void tap_from_fd(struct tap *t, int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl >= 0)
		fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	t->fd = fd;
	t->is_tap = false;
	snprintf(t->name, sizeof(t->name), "fd%d", fd);
}

int tap_set_offload(struct tap *t, unsigned offloads)
{
	unsigned long arg = 0;

	if (!t->is_tap || t->fd < 0)
		return 0;
	/* the tun driver refuses segmentation offloads without checksum offload */
	if (offloads & TAP_OFFLOAD_CSUM) {
		arg |= TUN_F_CSUM;
		if (offloads & TAP_OFFLOAD_TSO4)
			arg |= TUN_F_TSO4;
		if (offloads & TAP_OFFLOAD_TSO6)
			arg |= TUN_F_TSO6;
		if ((offloads & TAP_OFFLOAD_TSO_ECN) && (arg & (TUN_F_TSO4 | TUN_F_TSO6)))
			arg |= TUN_F_TSO_ECN;
	}
	return ioctl(t->fd, TUNSETOFFLOAD, arg) < 0 ? -errno : 0;
}

void tap_close(struct tap *t)
{
	if (t->fd >= 0)
		close(t->fd);
	t->fd = -1;
	t->is_tap = false;
}
