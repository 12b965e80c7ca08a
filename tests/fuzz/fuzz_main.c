/* Replays every file of a corpus directory through LLVMFuzzerTestOneInput, for builds without
 * libFuzzer: the seed corpus becomes a regression test. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int fuzz_replay_file(const char *path)
{
        static uint8_t buf[1 << 20];
        FILE *f = fopen(path, "rb");
        size_t n;

        if (!f)
                return -1;
        n = fread(buf, 1, sizeof(buf), f);
        fclose(f);
        LLVMFuzzerTestOneInput(buf, n);
        return 0;
}

int main(int argc, char **argv)
{
        char path[4096];
        struct dirent *e;
        unsigned count = 0;
        DIR *d;

        if (argc != 2) {
                fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
                return 2;
        }
        d = opendir(argv[1]);
        if (!d) {
                fprintf(stderr, "cannot open corpus '%s'\n", argv[1]);
                return 1;
        }
        while ((e = readdir(d))) {
                if (e->d_name[0] == '.')
                        continue;
                snprintf(path, sizeof(path), "%s/%s", argv[1], e->d_name);
                if (fuzz_replay_file(path) == 0)
                        count++;
        }
        closedir(d);
        printf("replayed %u inputs from '%s'\n", count, argv[1]);
        return count ? 0 : 1;
}
