/* A node's state directory: node.conf (who this node is: id, interface, port, role, mesh address,
 * endpoint; the genesis also keeps its address plan), wg.key (0600), genesis.pub (every node),
 * genesis.key (the genesis node only, 0600), roster.json (the last accepted roster). A roster
 * replaces the stored one only when the stored genesis key signed it and its version is higher. */
#include "provision/pairing.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sodium.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/config.h"
#include "common/mesh.h"
#include "common/small_file.h"

#define K(name, type, field, min, max, def, help)                                                  \
        {                                                                                          \
                name, type, offsetof(struct pair_node_conf, field), min, max, def, help            \
        }

static const struct config_key pair_conf_table[] = {
    K("node_id", CONFIG_STRING, node_id, NODE_ID_MAX + 1, NODE_ID_MAX + 1, "",
      "this node's id in the roster"),
    K("ifname", CONFIG_STRING, ifname, 16, 16, "wg0", "the mesh WireGuard interface"),
    K("wg_port", CONFIG_UINT, wg_port, 1, 65535, "51820", "WireGuard UDP port"),
    K("role", CONFIG_STRING, role, 8, 8, "node", "node, relay or cloud"),
    K("mesh_address", CONFIG_STRING, mesh_address, 16, 16, "", "this node's mesh address"),
    K("endpoint", CONFIG_STRING, endpoint, ROSTER_ENDPOINT_MAX + 1, ROSTER_ENDPOINT_MAX + 1, "",
      "this node's WireGuard endpoint (ip:port), empty behind NAT"),
    K("subnet", CONFIG_STRING, subnet, 20, 20, "", "genesis: the mesh address plan"),
    {0},
};

int pair_state_path(const char *dir, const char *name, char **ret)
{
        char *p = small_file_path(dir, name);

        if (!p)
                return -ENOMEM;
        if (strlen(p) >= PATH_MAX) { /* the bound of the PATH_MAX buffers this replaced */
                free(p);
                return -ENAMETOOLONG;
        }
        *ret = p;
        return 0;
}

int pair_state_mkdir(const char *dir)
{
        if (mkdir(dir, 0711) < 0 && errno != EEXIST)
                return -errno;
        return chmod(dir, 0711) < 0 ? -errno : 0; /* traverse only: fleetd reads roster.json */
}

/* Writes buf to dir/name atomically with the given mode (small_file_write: a temporary file,
 * fsync'd, renamed over the old one). */
static int pair_state_write(const char *dir, const char *name, const char *buf, size_t len,
                            mode_t mode)
{
        char *path = small_file_path(dir, name);
        int ret = path ? small_file_write(path, buf, len, mode) : -ENOMEM;

        free(path);
        return ret;
}

/* Reads dir/name (at most max bytes); secret files are refused when others can read them. */
static int pair_state_read(const char *dir, const char *name, bool secret, char *buf, size_t max,
                           size_t *ret_len)
{
        char *path = NULL;
        struct stat st;
        ssize_t n;
        int fd, ret = pair_state_path(dir, name, &path);

        if (ret < 0)
                return ret;
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        ret = fd < 0 ? -errno : 0;
        free(path);
        if (fd < 0)
                return ret;
        if (fstat(fd, &st) < 0) {
                ret = -errno;
                goto cleanup;
        }
        if (secret && ((st.st_mode & 077) || st.st_uid != geteuid())) {
                ret = -EPERM; /* not errno: it holds whatever an earlier call left there */
                goto cleanup;
        }
        n = read(fd, buf, max - 1);
        if (n < 0) {
                ret = -errno;
                goto cleanup;
        }
        buf[n] = '\0';
        *ret_len = (size_t)n;
cleanup:
        close(fd);
        return ret;
}

int pair_conf_save(const char *dir, const struct pair_node_conf *c)
{
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        int ret;

        if (!f)
                return -ENOMEM;
        fprintf(f, "# totebox-pair: this node's identity in the mesh (written by the tool)\n");
        config_print(pair_conf_table, c, f);
        fclose(f);
        ret = pair_state_write(dir, "node.conf", buf, len, 0644);
        free(buf);
        return ret;
}

int pair_conf_load(const char *dir, struct pair_node_conf *c)
{
        struct config_error err;
        char *path = NULL;
        int ret;

        memset(c, 0, sizeof(*c));
        ret = pair_state_path(dir, "node.conf", &path);
        if (ret < 0)
                return ret;
        if (access(path, R_OK) < 0)
                ret = -errno;
        else if (config_set_defaults(pair_conf_table, c, &err) < 0 ||
                 config_load_file(pair_conf_table, c, path, &err) < 0)
                ret = -EINVAL;
        free(path);
        return ret;
}

/* replace false: -EEXIST when the file exists (a restored genesis key never replaces one). */
static int pair_key_save(const char *dir, const char *name, const uint8_t *key, size_t len,
                         mode_t mode, bool replace)
{
        char b64[sodium_base64_ENCODED_LEN(64, sodium_base64_VARIANT_ORIGINAL) + 1];
        char *path = NULL;
        int ret;

        sodium_bin2base64(b64, sizeof(b64) - 1, key, len, sodium_base64_VARIANT_ORIGINAL);
        strcat(b64, "\n");
        if (replace)
                ret = pair_state_write(dir, name, b64, strlen(b64), mode);
        else
                ret = pair_state_path(dir, name, &path)
                          ?: small_file_create(path, b64, strlen(b64), mode);
        free(path);
        sodium_memzero(b64, sizeof(b64));
        return ret;
}

static int pair_key_load(const char *dir, const char *name, bool secret, uint8_t *key, size_t len)
{
        char buf[256];
        size_t n = 0, bin = 0;
        int ret = pair_state_read(dir, name, secret, buf, sizeof(buf), &n);

        if (ret == 0) {
                while (n && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
                        buf[--n] = '\0';
                if (sodium_base642bin(key, len, buf, n, NULL, &bin, NULL,
                                      sodium_base64_VARIANT_ORIGINAL) != 0 ||
                    bin != len)
                        ret = -EINVAL;
        }
        sodium_memzero(buf, sizeof(buf));
        return ret;
}

int pair_genesis_key_save(const char *dir, const uint8_t sk[64])
{
        return pair_key_save(dir, "genesis.key", sk, 64, 0600, true);
}

int pair_genesis_key_require(const char *cmd, const char *dir, uint8_t sk[64])
{
        int ret = pair_genesis_key_load(dir, sk);

        if (ret < 0)
                fprintf(stderr, "%s: no genesis key in '%s' (run this on the genesis node): %s\n",
                        cmd, dir, strerror(-ret));
        return ret;
}

int pair_genesis_key_create(const char *dir, const uint8_t sk[64])
{
        return pair_key_save(dir, "genesis.key", sk, 64, 0600, false);
}

int pair_genesis_key_load(const char *dir, uint8_t sk[64])
{
        return pair_key_load(dir, "genesis.key", true, sk, 64);
}

int pair_genesis_pub_save(const char *dir, const uint8_t pk[32])
{
        return pair_key_save(dir, "genesis.pub", pk, 32, 0644, true);
}

int pair_genesis_pub_load(const char *dir, uint8_t pk[32])
{
        return mesh_genesis_pub_load(dir, pk);
}

struct roster *pair_roster_load(const char *dir, char *err, size_t errsize)
{
        char *path = NULL;
        struct roster *r;
        int ret = pair_state_path(dir, "roster.json", &path);

        if (ret < 0) {
                snprintf(err, errsize, "%s",
                         ret == -ENOMEM ? "out of memory" : "state directory path too long");
                return NULL;
        }
        r = roster_load_file(path, err, errsize);
        free(path);
        return r;
}

int pair_roster_store(const char *dir, const struct roster *r)
{
        return mesh_roster_store(dir, r);
}

int pair_roster_accept(const char *dir, const struct roster *r, char *err, size_t errsize)
{
        return mesh_roster_accept(dir, r, err, errsize);
}
