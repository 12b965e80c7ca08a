/* The audit record as a transparency log: fleetd's own Ed25519 key (state dir, audit.key, a C2SP
 * signer key, 0600 and refused when others can read it; audit.pub holds the verifier key),
 * checkpoints over the record's leaves in the C2SP tlog-checkpoint format (kept in the
 * audit_checkpoint row and in the file audit-checkpoint, which a restored database does not
 * roll back), and the check of the record against those and against the checkpoints the nodes
 * witnessed: it names a tampered entry, a truncation, a rollback and a fork. Shared by fleetd
 * (signing; its start-up check) and fleetctl (audit verify). */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/tlog_checkpoint.h"

struct store;

#define AUDIT_KEY_FILE        "audit.key"
#define AUDIT_PUB_FILE        "audit.pub"
#define AUDIT_CHECKPOINT_FILE "audit-checkpoint"
#define AUDIT_ORIGIN_PREFIX   "fleetd.totebox/"
#define AUDIT_FINDINGS_MAX    32

struct audit_key {
        struct tlog_key pub;
        uint8_t sk[TLOG_SECRET_KEY_LEN];
};

/* Loads dir/audit.key; when absent and create, makes one named AUDIT_ORIGIN_PREFIX fleet_id.
 * With create, audit.pub is (re)written when absent or naming another key. -EPERM when the file is
 * readable by group or others, -EBADMSG when it is no signer key; err says which file and why. */
int audit_key_load(const char *dir, bool create, const char *fleet_id, struct audit_key *ret,
                   char *err, size_t errsize);
void audit_key_wipe(struct audit_key *k);
/* Reads dir/audit.pub (a C2SP verifier key). */
int audit_pub_load(const char *dir, struct tlog_key *ret, char *err, size_t errsize);

/* Signs the checkpoint of the first n leaves and keeps it (the audit_checkpoint row, then the
 * checkpoint file, both durable before return). The note goes to buf (size >= TLOG_NOTE_MAX). */
int audit_checkpoint_sign(struct store *s, const char *dir, const struct audit_key *k,
                          const merkle_hash *leaves, uint64_t n, char *buf, size_t size);
/* The checkpoint kept in the database row, as a note (malloc'd), or NULL. */
char *audit_checkpoint_stored(struct store *s);

enum audit_finding_kind {
        AUDIT_TAMPERED,    /* an entry does not match its own hashes, or entries are missing */
        AUDIT_TRUNCATED,   /* fewer entries than fleetd's own checkpoint kept in the database */
        AUDIT_ROLLED_BACK, /* fewer entries than a checkpoint kept outside it (file, a node) */
        AUDIT_FORKED,      /* a checkpoint's root is not the root of the record at its size */
        AUDIT_BAD_WITNESS, /* a checkpoint that is not this key's, or that does not parse */
        AUDIT_REFUSED,     /* a node kept a checkpoint it refused as inconsistent (evidence) */
};

struct audit_finding {
        enum audit_finding_kind kind;
        char text[400];
};

/* One checkpoint to check the record against: who holds it and the note. */
struct audit_witness {
        const char *holder; /* "fleetd's checkpoint file", "node 'n1'" ... */
        const char *note;
        size_t len;
        bool evidence; /* a checkpoint the holder refused: reported as AUDIT_REFUSED */
};

struct audit_report {
        uint64_t entries;
        unsigned checked; /* checkpoints that verified and agreed */
        uint64_t largest; /* the largest checkpoint size that verified */
        unsigned n_findings;
        struct audit_finding findings[AUDIT_FINDINGS_MAX];
};

/* Checks the record against the database's own checkpoint, the checkpoint file in dir (when
 * dir is set) and the witnesses, all under key. 0 when the report has no findings, -EBADMSG
 * when it has, -EIO when the record cannot be read. */
int audit_log_check(struct store *s, const char *dir, const struct tlog_key *key,
                    const struct audit_witness *w, size_t n_w, struct audit_report *ret);
const char *audit_finding_name(enum audit_finding_kind k);
