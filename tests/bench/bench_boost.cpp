/* SPDX-License-Identifier: MIT */
// bench_boost.cpp - Boost.Context's raw fcontext switch, measured in the same
// process as libbluelet by bench_switch (the baseline of its ratios).
#include <boost/context/detail/fcontext.hpp>

#include <cstdlib>
#include <ctime>

namespace bc = boost::context::detail;

static double now()
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static const std::size_t stack_size = 64 * 1024;

// Ping-pong partner: jumps straight back, forever.
static void bouncer(bc::transfer_t t)
{
    for (;;)
        t = bc::jump_fcontext(t.fctx, nullptr);
}

// Made, entered once, and done: jumps back to its creator for good.
static void one_shot(bc::transfer_t t)
{
    bc::jump_fcontext(t.fctx, nullptr);
}

extern "C" double bench_boost_jump_ns(long round_trips)
{
    char *stack = static_cast<char *>(std::malloc(stack_size));
    if (stack == nullptr)
        std::abort();
    bc::fcontext_t ctx = bc::make_fcontext(stack + stack_size, stack_size, bouncer);
    double t0 = now();
    for (long i = 0; i < round_trips; i++)
        ctx = bc::jump_fcontext(ctx, nullptr).fctx;
    double ns = (now() - t0) * 1e9 / (double)(2 * round_trips);
    std::free(stack);
    return ns;
}

extern "C" double bench_boost_make_jump_ns(long iterations)
{
    char *stack = static_cast<char *>(std::malloc(stack_size));
    if (stack == nullptr)
        std::abort();
    double t0 = now();
    for (long i = 0; i < iterations; i++) {
        bc::fcontext_t ctx = bc::make_fcontext(stack + stack_size, stack_size, one_shot);
        bc::jump_fcontext(ctx, nullptr);
    }
    double ns = (now() - t0) * 1e9 / (double)iterations;
    std::free(stack);
    return ns;
}

// Create + run + destroy as a Boost user writes it without a stack pool: a
// malloc'd stack per context, freed after the context has finished.
extern "C" double bench_boost_create_run_destroy_ns(long iterations)
{
    double t0 = now();
    for (long i = 0; i < iterations; i++) {
        char *stack = static_cast<char *>(std::malloc(stack_size));
        if (stack == nullptr)
            std::abort();
        bc::fcontext_t ctx = bc::make_fcontext(stack + stack_size, stack_size, one_shot);
        bc::jump_fcontext(ctx, nullptr);
        std::free(stack);
    }
    return (now() - t0) * 1e9 / (double)iterations;
}
