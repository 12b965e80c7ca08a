/* fleetd's backup archive (docs/operations.md, "Backup and restore"): a consistent copy of the
 * state database taken online, with the state directory's key and checkpoint files, in one
 * self-checking file; optionally sealed with a passphrase (Argon2id + XChaCha20-Poly1305
 * secretstream). fleetd writes it (GET /v1/backup), fleetctl seals, checks and restores it. */
#pragma once
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define BACKUP_MAGIC        "TBXFBK1\n" /* a plain archive */
#define BACKUP_SEALED_MAGIC "TBXFBKS1"  /* sealed with a passphrase (common/pwseal.h) */
#define BACKUP_MAGIC_LEN    8
#define BACKUP_FILES_MAX    32
#define BACKUP_FILE_MAX     (64u * 1024 * 1024 * 1024ull) /* the database */
#define BACKUP_SMALL_MAX    (1024u * 1024)                /* any other file */
#define BACKUP_MANIFEST_MAX (64u * 1024)
#define BACKUP_NAME_MAX     64

struct fleetd;

/* One file of an archive: name, and where its bytes are in the archive's buffer. */
struct backup_entry {
        char name[BACKUP_NAME_MAX + 1];
        const uint8_t *data;
        uint64_t size;
};

/* A parsed archive: the manifest and the entries (both owned; the entries on the heap, so that
 * an archive on the stack stays small), the entries pointing into the caller's buffer. */
struct backup_archive {
        json_t *manifest;
        struct backup_entry *files; /* n_files of them, at most BACKUP_FILES_MAX */
        size_t n_files;
};

/* Writes a plain archive of fleetd's state to fd (from its current offset): the database copied
 * through a read connection of its own (a WAL snapshot: writers go on), then every regular file
 * of the state directory that fleetd needs back. 0, or a negative errno with err filled. */
int backup_write(struct fleetd *f, int fd, char *err, size_t errsize);
/* Parses and checks a plain archive held in buf (magic, manifest, sizes, every file's SHA-256
 * and the archive's own): 0, or -EBADMSG (-ENOMEM) with what is wrong in err. ret borrows buf;
 * backup_archive_done frees it. */
int backup_parse(const uint8_t *buf, size_t len, struct backup_archive *ret, char *err,
                 size_t errsize);
void backup_archive_done(struct backup_archive *a);
