/*
 * threads.c - the CPU backend's persistent thread pool: nthreads - 1
 * pthreads that sleep on a condition variable between ops, plus the calling
 * thread, which works too. Items are handed out through one atomic counter.
 *
 * Not for: deciding how an op is cut into items (each op does that from its
 * shapes alone, which is what makes results independent of the thread
 * count; see cpu.h), or nested parallelism.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "cpu.h"
#include "pe.h"

typedef struct pe_cpu_worker {
    pe_cpu_pool *pool;
    int tid;
} pe_cpu_worker;

struct pe_cpu_pool {
    int nthreads;
    int nstarted;               /* worker threads running (nthreads - 1) */
    pthread_t *threads;         /* (nthreads - 1) */
    pe_cpu_worker *workers;     /* (nthreads - 1) */
    pthread_mutex_t mu;
    pthread_cond_t wake;        /* a new job, or quit */
    pthread_cond_t done;        /* busy reached 0 */
    unsigned long generation;   /* bumped once per job */
    int quit;
    int busy;                   /* workers not yet done with this job */
    int running;                /* a job is in flight (nesting check) */
    /* the current job; written under mu before generation is bumped */
    pe_cpu_item_fn fn;
    void *ctx;
    size_t n;
    atomic_size_t next;         /* next item to hand out */
};

static void run_items(pe_cpu_pool *p, pe_cpu_item_fn fn, void *ctx, size_t n,
                      int tid) {
    for (;;) {
        size_t i = atomic_fetch_add_explicit(&p->next, 1, memory_order_relaxed);
        if (i >= n) break;
        fn(ctx, i, tid);
    }
}

static void *worker_main(void *arg) {
    pe_cpu_worker *w = arg;
    pe_cpu_pool *p = w->pool;
    unsigned long seen = 0;

    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (p->generation == seen && !p->quit)
            pthread_cond_wait(&p->wake, &p->mu);
        if (p->quit) break;
        seen = p->generation;
        pe_cpu_item_fn fn = p->fn;
        void *ctx = p->ctx;
        size_t n = p->n;
        pthread_mutex_unlock(&p->mu);

        run_items(p, fn, ctx, n, w->tid);

        pthread_mutex_lock(&p->mu);
        if (--p->busy == 0) pthread_cond_signal(&p->done);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

int pe_cpu_pool_open(pe_cpu_pool **out, int nthreads) {
    int rc = 0;
    *out = NULL;
    PE_ASSERT(nthreads >= 1);
    pe_cpu_pool *p = calloc(1, sizeof *p);
    if (!p) return ENOMEM;
    p->nthreads = nthreads;
    atomic_init(&p->next, 0);
    if (nthreads > 1) {
        p->threads = calloc((size_t)nthreads - 1, sizeof *p->threads);
        p->workers = calloc((size_t)nthreads - 1, sizeof *p->workers);
        if (!p->threads || !p->workers) {
            rc = ENOMEM;
            goto fail_alloc;
        }
    }
    if ((rc = pthread_mutex_init(&p->mu, NULL)) != 0) goto fail_alloc;
    if ((rc = pthread_cond_init(&p->wake, NULL)) != 0) goto fail_mutex;
    if ((rc = pthread_cond_init(&p->done, NULL)) != 0) goto fail_wake;
    for (int t = 1; t < nthreads; t++) {
        pe_cpu_worker *w = &p->workers[t - 1];
        w->pool = p;
        w->tid = t;
        if ((rc = pthread_create(&p->threads[t - 1], NULL, worker_main, w)) != 0)
            goto fail_threads;
        p->nstarted++;
        char name[16]; /* the kernel keeps 15 bytes of a thread name */
        snprintf(name, sizeof name, "pe-cpu-%d", t % 10000);
        pthread_setname_np(p->threads[t - 1], name);
    }
    *out = p;
    return 0;

fail_threads:
    pe_cpu_pool_close(p);
    return rc;
fail_wake:
    pthread_cond_destroy(&p->wake);
fail_mutex:
    pthread_mutex_destroy(&p->mu);
fail_alloc:
    free(p->workers);
    free(p->threads);
    free(p);
    return rc;
}

void pe_cpu_pool_close(pe_cpu_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->quit = 1;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (int t = 0; t < p->nstarted; t++) pthread_join(p->threads[t], NULL);
    pthread_cond_destroy(&p->done);
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->mu);
    free(p->workers);
    free(p->threads);
    free(p);
}

int pe_cpu_pool_threads(const pe_cpu_pool *p) { return p->nthreads; }

void pe_cpu_parallel_for(pe_cpu_pool *p, size_t n, pe_cpu_item_fn fn,
                         void *ctx) {
    if (n == 0) return;
    if (n == 1 || p->nstarted == 0) {
        for (size_t i = 0; i < n; i++) fn(ctx, i, 0);
        return;
    }
    pthread_mutex_lock(&p->mu);
    PE_ASSERT(!p->running); /* an item called pe_cpu_parallel_for */
    p->running = 1;
    p->fn = fn;
    p->ctx = ctx;
    p->n = n;
    atomic_store_explicit(&p->next, 0, memory_order_relaxed);
    p->busy = p->nstarted;
    p->generation++;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);

    run_items(p, fn, ctx, n, 0);

    pthread_mutex_lock(&p->mu);
    while (p->busy > 0) pthread_cond_wait(&p->done, &p->mu);
    p->running = 0;
    pthread_mutex_unlock(&p->mu);
}
