/*
 * store_restore: libhitless from C. Opens the card named by argv[1] (any
 * spec: vfio-user:SOCKET, daemon:SOCKET, ...), opens application 42,
 * stores sets of 16 B, 4 KiB and 300 KiB, restores and compares them,
 * lists them, fetches them at their reboot stage, appends to and reads the
 * log, prints the status, and checks the error paths. Then the persistent
 * heap of application 43: written through its pointer, checkpointed twice
 * with a state blob, closed, reopened and read back, restarted from the
 * older version. Exits non-zero on any mismatch.
 *
 *   cc -std=c11 -Wall -Wextra -Werror -Iinclude capi/examples/c/store_restore.c \
 *      -Ltarget/release -lhitless -o store_restore
 *   LD_LIBRARY_PATH=target/release ./store_restore vfio-user:/tmp/hitless/card.sock
 */

#include <hitless.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define APP 42u
#define STAGE 3u

static int failures;

#define CHECK(cond, ...)                                                     \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);             \
            fprintf(stderr, __VA_ARGS__);                                    \
            fprintf(stderr, " (last error: %s)\n", hitless_last_error());    \
            failures++;                                                      \
        }                                                                    \
    } while (0)

/* A call that must succeed; on failure, say which and why. */
#define OK(call)                                                             \
    do {                                                                     \
        int rc_ = (call);                                                    \
        CHECK(rc_ == HITLESS_OK, "%s = %d (%s)", #call, rc_,                 \
              hitless_strerror(rc_));                                        \
    } while (0)

static void fill(uint8_t *p, size_t n, uint32_t seed)
{
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        p[i] = (uint8_t)x;
    }
}

struct set {
    uint32_t object;
    int cold;
    size_t len;
    uint8_t *data;
};

#define HEAP_APP 43u
#define HEAP_PAGES 64u

/* Write `v` into the first 100 bytes of every fourth page, through the
 * heap's pointer (the library tracks the writes). */
static void heap_fill(uint8_t *p, uint8_t v)
{
    for (size_t page = 0; page < HEAP_PAGES; page += 4)
        memset(p + page * HITLESS_HEAP_PAGE_BYTES, v, 100);
}

/* Whether every fourth page starts with 100 bytes of `v`. */
static int heap_holds(hitless_heap *h, uint8_t v)
{
    uint8_t b[100];
    for (size_t page = 0; page < HEAP_PAGES; page += 4) {
        if (hitless_heap_read(h, page * HITLESS_HEAP_PAGE_BYTES, b, sizeof b) != HITLESS_OK)
            return 0;
        for (size_t i = 0; i < sizeof b; i++)
            if (b[i] != v)
                return 0;
    }
    return 1;
}

static hitless_heap *heap_open(const char *spec)
{
    hitless_heap *h =
        hitless_heap_open(spec, 10000, HEAP_APP, 0, HEAP_PAGES, 3, HITLESS_COLD, 8, 0);
    CHECK(h != NULL, "hitless_heap_open: %d", hitless_last_error_code());
    return h;
}

static void heap_part(const char *spec)
{
    hitless_heap *h = heap_open(spec);
    if (!h)
        return;
    size_t len = 0;
    uint8_t *p = hitless_heap_ptr(h, &len);
    CHECK(p != NULL && len == HEAP_PAGES * HITLESS_HEAP_PAGE_BYTES, "heap pointer, %zu bytes",
          len);
    if (!p) {
        hitless_heap_close(h);
        return;
    }
    uint64_t va = 0, vb = 0;
    heap_fill(p, 0xA1);
    OK(hitless_heap_checkpoint(h, (const uint8_t *)"state A", 7, &va));
    heap_fill(p, 0xB2);
    /* Explicit writes too: a word past the filled bytes of page 1. */
    OK(hitless_heap_write(h, HITLESS_HEAP_PAGE_BYTES + 200, (const uint8_t *)"B", 1));
    OK(hitless_heap_mark_dirty(h, 0, 100));
    OK(hitless_heap_checkpoint(h, (const uint8_t *)"state B", 7, &vb));
    CHECK(vb == va + 1, "versions %llu then %llu", (unsigned long long)va,
          (unsigned long long)vb);
    OK(hitless_heap_close(h));
    printf("heap: checkpointed versions %llu and %llu\n", (unsigned long long)va,
           (unsigned long long)vb);

    /* Reopened: the newest version's bytes; both versions kept. */
    h = heap_open(spec);
    if (!h)
        return;
    CHECK(heap_holds(h, 0xB2), "reopened: not version B's bytes");
    uint8_t one = 0;
    OK(hitless_heap_read(h, HITLESS_HEAP_PAGE_BYTES + 200, &one, 1));
    CHECK(one == 'B', "reopened: the explicit write is %u", one);
    hitless_heap_version vs[8];
    size_t n = 0;
    OK(hitless_heap_versions(h, vs, 8, &n));
    CHECK(n >= 2 && n <= 3 && vs[n - 1].version == vb && vs[n - 2].version == va &&
              vs[n - 1].state_len == 7,
          "versions: %zu, newest %llu", n, n ? (unsigned long long)vs[n - 1].version : 0ull);
    printf("heap: reopened, read back version %llu\n", (unsigned long long)vb);

    /* Restart from the older version: its bytes and its state. */
    char state[16] = {0};
    size_t state_len = 0;
    int rc = hitless_heap_restart_from(h, va, (uint8_t *)state, 2, &state_len);
    CHECK(rc == HITLESS_E_TOO_SMALL && state_len == 7, "state into 2 bytes: %d, %zu", rc,
          state_len);
    OK(hitless_heap_restart_from(h, va, (uint8_t *)state, sizeof state, &state_len));
    CHECK(state_len == 7 && memcmp(state, "state A", 7) == 0, "restarted state %.*s",
          (int)state_len, state);
    CHECK(heap_holds(h, 0xA1), "restarted: not version A's bytes");
    rc = hitless_heap_restart_from(h, 999999, (uint8_t *)state, sizeof state, &state_len);
    CHECK(rc == HITLESS_E_NOT_FOUND, "restart from a version not kept: %d", rc);
    uint64_t vc = 0;
    OK(hitless_heap_checkpoint(h, (const uint8_t *)"state A again", 13, &vc));
    CHECK(vc == vb + 1, "the checkpoint after the restart is %llu", (unsigned long long)vc);
    rc = hitless_heap_read(h, (uint64_t)len, &one, 1);
    CHECK(rc == HITLESS_E_INVALID_ARGUMENT, "read past the heap: %d", rc);
    rc = hitless_heap_checkpoint(NULL, NULL, 0, NULL);
    CHECK(rc == HITLESS_E_INVALID_ARGUMENT, "checkpoint of NULL: %d", rc);
    OK(hitless_heap_close(h));
    h = heap_open(spec);
    if (!h)
        return;
    CHECK(heap_holds(h, 0xA1), "after the restart and a checkpoint: not version A's bytes");
    OK(hitless_heap_close(h));
    printf("heap: restarted from version %llu, checkpointed it as %llu\n",
           (unsigned long long)va, (unsigned long long)vc);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s CARD-SPEC\n", argv[0]);
        return 2;
    }
    hitless_card *card = hitless_open(argv[1], 10000);
    if (!card) {
        fprintf(stderr, "hitless_open(%s): %s (%d)\n", argv[1], hitless_last_error(),
                hitless_last_error_code());
        return 1;
    }
    hitless_session *s = hitless_session_open(card, APP, HITLESS_ALL);
    if (!s) {
        fprintf(stderr, "hitless_session_open(%u): %s (%d)\n", APP, hitless_last_error(),
                hitless_last_error_code());
        hitless_close(card);
        return 1;
    }
    printf("opened application %u on %s\n", APP, argv[1]);

    /* Three sets of different sizes, both tiers. */
    struct set sets[3] = {
        {1, HITLESS_WARM, 16, NULL},
        {2, HITLESS_COLD, 4096, NULL},
        {3, HITLESS_COLD, 300 * 1024, NULL},
    };
    for (int i = 0; i < 3; i++) {
        sets[i].data = malloc(sets[i].len);
        if (!sets[i].data)
            return 1;
        fill(sets[i].data, sets[i].len, sets[i].object);
        OK(hitless_store(s, sets[i].object, 0, STAGE, sets[i].cold, sets[i].data,
                         sets[i].len));
    }
    size_t cap = 512 * 1024;
    uint8_t *buf = malloc(cap);
    if (!buf)
        return 1;
    for (int i = 0; i < 3; i++) {
        size_t len = 0;
        memset(buf, 0, cap);
        OK(hitless_restore(s, sets[i].object, buf, cap, &len));
        CHECK(len == sets[i].len, "object %u: restored %zu bytes, stored %zu", sets[i].object,
              len, sets[i].len);
        CHECK(len == sets[i].len && memcmp(buf, sets[i].data, len) == 0,
              "object %u: restored bytes differ", sets[i].object);
    }
    printf("stored and restored 3 sets (16, 4096, 307200 bytes)\n");

    /* The list. */
    hitless_set_info info[8];
    size_t count = 0;
    OK(hitless_list(s, info, 8, &count));
    CHECK(count == 3, "list: %zu sets, want 3", count);
    for (size_t i = 0; i < count && i < 8; i++) {
        int found = 0;
        for (int j = 0; j < 3; j++) {
            if (info[i].object == sets[j].object) {
                found = 1;
                CHECK(info[i].app == APP && info[i].len == sets[j].len &&
                          info[i].stage == STAGE && (int)info[i].cold == sets[j].cold,
                      "list: object %u is app %u, %u bytes, stage %u, cold %u", info[i].object,
                      info[i].app, info[i].len, info[i].stage, info[i].cold);
            }
        }
        CHECK(found, "list: unexpected object %u", info[i].object);
    }
    /* Too little room for the list: the count needed comes back. */
    size_t need = 0;
    int rc = hitless_list(s, info, 1, &need);
    CHECK(rc == HITLESS_E_TOO_SMALL && need == 3, "list with room for 1: %d, need %zu", rc,
          need);
    printf("listed %zu sets\n", count);

    /* Delivery at the reboot stage: announce, then fetch packed. */
    size_t announced = 0;
    OK(hitless_stage_announce(card, STAGE, &announced));
    CHECK(announced >= 3, "stage %u: the card holds %zu sets", STAGE, announced);
    size_t nsets = 0, used = 0;
    OK(hitless_stage_fetch(s, STAGE, buf, cap, info, 8, &nsets, &used));
    CHECK(nsets == 3 && used == 16 + 4096 + 300 * 1024, "fetch: %zu sets, %zu bytes", nsets,
          used);
    for (size_t i = 0; i < nsets && i < 8; i++) {
        for (int j = 0; j < 3; j++) {
            if (info[i].object == sets[j].object) {
                CHECK(info[i].len == sets[j].len && info[i].data_offset + info[i].len <= used &&
                          memcmp(buf + info[i].data_offset, sets[j].data, sets[j].len) == 0,
                      "fetch: object %u's bytes differ", info[i].object);
            }
        }
    }
    rc = hitless_stage_fetch(s, STAGE, buf, 100, info, 8, &nsets, &used);
    CHECK(rc == HITLESS_E_TOO_SMALL && used == 16 + 4096 + 300 * 1024,
          "fetch into 100 bytes: %d, need %zu", rc, used);
    printf("fetched %zu sets at stage %u\n", nsets, STAGE);

    /* The append log (warm tier): two records, read, trimmed. */
    uint32_t off1 = 0, off2 = 0;
    OK(hitless_log_append(s, 7, HITLESS_WARM, (const uint8_t *)"first record", 12, &off1));
    OK(hitless_log_append(s, 7, HITLESS_WARM, (const uint8_t *)"second", 6, &off2));
    CHECK(off2 > off1, "log offsets %u then %u", off1, off2);
    hitless_log_record recs[8];
    uint32_t head = 0, tail = 0;
    size_t nrec = 0;
    OK(hitless_log_read(s, HITLESS_WARM, buf, cap, recs, 8, &nrec, &used, &head, &tail));
    CHECK(nrec == 2, "log: %zu records, want 2", nrec);
    if (nrec == 2) {
        CHECK(recs[0].len == 12 && memcmp(buf + recs[0].data_offset, "first record", 12) == 0,
              "log record 0 differs");
        CHECK(recs[1].len == 6 && memcmp(buf + recs[1].data_offset, "second", 6) == 0,
              "log record 1 differs");
        CHECK(recs[0].offset == off1 && recs[1].offset == off2 && recs[1].seq > recs[0].seq,
              "log record offsets %u %u, seq %llu %llu", recs[0].offset, recs[1].offset,
              (unsigned long long)recs[0].seq, (unsigned long long)recs[1].seq);
    }
    OK(hitless_log_trim(s, HITLESS_WARM, head));
    OK(hitless_log_read(s, HITLESS_WARM, buf, cap, recs, 8, &nrec, &used, NULL, NULL));
    CHECK(nrec == 0 && used == 0, "log after trim: %zu records", nrec);
    printf("log: appended 2 records, read them back, trimmed to %u\n", head);

    /* The status. */
    hitless_card_status st;
    OK(hitless_status(card, &st));
    printf("status: warm %u sets %u bytes (boot %u), cold %u sets %u bytes (boot %u), "
           "%u requests, %u stores, stage %s%u\n",
           st.warm.sets, st.warm.image_bytes, st.warm.boot_result, st.cold.sets,
           st.cold.image_bytes, st.cold.boot_result, st.requests, st.stores,
           st.has_announced ? "" : "none ", st.announced_stage);
    CHECK(st.warm.state == HITLESS_TIER_READY && st.cold.state == HITLESS_TIER_READY,
          "tier states %u %u", st.warm.state, st.cold.state);
    CHECK(st.warm.sets >= 1 && st.cold.sets >= 2, "tier sets %u %u", st.warm.sets,
          st.cold.sets);
    CHECK(st.has_announced && st.announced_stage == STAGE, "announced %u/%u",
          st.has_announced, st.announced_stage);

    /* Error paths. */
    size_t len = 0;
    rc = hitless_restore(s, 999, buf, cap, &len);
    CHECK(rc == HITLESS_E_NOT_FOUND, "restore of a missing object: %d, want %d", rc,
          HITLESS_E_NOT_FOUND);
    CHECK(strlen(hitless_last_error()) > 0, "no message for the missing object");
    printf("missing object: %d (%s): %s\n", rc, hitless_strerror(rc), hitless_last_error());
    len = 0;
    rc = hitless_restore(s, 2, buf, 100, &len);
    CHECK(rc == HITLESS_E_TOO_SMALL && len == 4096, "restore into 100 bytes: %d, need %zu", rc,
          len);
    rc = hitless_restore(s, 2, NULL, 0, &len);
    CHECK(rc == HITLESS_E_TOO_SMALL && len == 4096, "size query: %d, %zu", rc, len);
    printf("too small: %d (%s), needs %zu bytes\n", rc, hitless_strerror(rc), len);
    rc = hitless_store(s, 9, 0, 0, HITLESS_WARM, NULL, 10);
    CHECK(rc == HITLESS_E_INVALID_ARGUMENT, "store from NULL: %d", rc);
    rc = hitless_store(s, 9, 0, 0, HITLESS_WARM, buf, (size_t)HITLESS_MAX_TRANSFER + 1);
    CHECK(rc == HITLESS_E_INVALID_ARGUMENT, "store over the bound: %d", rc);
    rc = hitless_restore(s, 2, buf, cap, NULL);
    CHECK(rc == HITLESS_E_INVALID_ARGUMENT, "restore without len_out: %d", rc);
    rc = hitless_status(NULL, &st);
    CHECK(rc == HITLESS_E_INVALID_ARGUMENT, "status of NULL: %d", rc);
    CHECK(hitless_session_open(card, APP, 0x1000) == NULL &&
              hitless_last_error_code() == HITLESS_E_INVALID_ARGUMENT,
          "unknown flags accepted");
    printf("error paths checked\n");

    /* Delete, then it is gone. */
    OK(hitless_delete(s, 1));
    rc = hitless_restore(s, 1, buf, cap, &len);
    CHECK(rc == HITLESS_E_NOT_FOUND, "restore after delete: %d", rc);
    rc = hitless_delete(s, 1);
    CHECK(rc == HITLESS_E_NOT_FOUND, "delete twice: %d", rc);
    OK(hitless_delete(s, 2));
    OK(hitless_delete(s, 3));
    OK(hitless_list(s, info, 8, &count));
    CHECK(count == 0, "list after delete: %zu", count);
    printf("deleted 3 sets\n");

    OK(hitless_session_close(s));
    hitless_close(card);

    heap_part(argv[1]);
    for (int i = 0; i < 3; i++)
        free(sets[i].data);
    free(buf);
    if (failures) {
        fprintf(stderr, "%d checks failed\n", failures);
        return 1;
    }
    printf("all checks passed\n");
    return 0;
}
