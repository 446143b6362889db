// Unit tests of the scheduling policy (sched/policy.hpp): each test builds a small cluster,
// feeds the scheduler events and checks the decisions a user would see — which job
// starts where, which is preempted, which fails and why, and the notes in job status.
#include "sched/policy.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <cstdio>
#include <random>
#include <set>

namespace {

using namespace sched::policy;
using kind = decision::kind;

constexpr std::int64_t gib = std::int64_t{1} << 30;
constexpr std::int64_t cpus(double n) { return static_cast<std::int64_t>(n * 1000); }

node_spec node(std::string name, double ncpu, std::int64_t mem, std::vector<label> labels = {}) {
  return node_spec{.name = std::move(name), .capacity = {cpus(ncpu), mem}, .labels = std::move(labels)};
}

job_spec job(std::uint64_t id, std::string user, double ncpu, std::int64_t mem) {
  return job_spec{.id = id, .user = std::move(user), .need = {cpus(ncpu), mem}, .submitted_ms = static_cast<std::int64_t>(id)};
}

std::vector<decision> of_kind(const std::vector<decision>& ds, kind k) {
  std::vector<decision> r;
  for (const decision& d : ds) {
    if (d.what == k) r.push_back(d);
  }
  return r;
}

std::map<std::uint64_t, std::string> started(const std::vector<decision>& ds) {
  std::map<std::uint64_t, std::string> r;
  for (const decision& d : of_kind(ds, kind::start)) r[d.job] = d.node;
  return r;
}

void ok(const std::expected<void, std::string>& r) { ASSERT_TRUE(r.has_value()) << r.error(); }

// ---------------------------------------------------------------------------------------
// DRF

// The example of Ghodsi et al. (NSDI 2011, §4): 9 CPUs and 18 GB; A's tasks need
// <1 CPU, 4 GB>, B's <3 CPUs, 1 GB>. DRF gives A three tasks and B two, both dominant
// shares 2/3.
TEST(policy_drf, paper_example) {
  scheduler s;
  ok(s.set_node(node("n1", 9, 18 * gib)));
  for (std::uint64_t i = 0; i < 10; ++i) {
    ok(s.submit(job(100 + i, "A", 1, 4 * gib)));
    ok(s.submit(job(200 + i, "B", 3, 1 * gib)));
  }
  auto st = started(s.decide(0));
  int a = 0, b = 0;
  for (const auto& [id, n] : st) (id < 200 ? a : b)++;
  EXPECT_EQ(a, 3);
  EXPECT_EQ(b, 2);
  EXPECT_NEAR(s.user("A")->dominant_share, 2.0 / 3, 1e-9);  // 12 GB of 18
  EXPECT_NEAR(s.user("B")->dominant_share, 2.0 / 3, 1e-9);  // 6 CPUs of 9
  EXPECT_EQ(s.user("A")->running, 3);
  EXPECT_EQ(s.user("B")->queued, 8);
  // Within each user, submission order: A's first three and B's first two.
  EXPECT_TRUE(st.contains(100) && st.contains(101) && st.contains(102));
  EXPECT_TRUE(st.contains(200) && st.contains(201));
}

// The same example split over three nodes: DRF is computed over the cluster's totals.
TEST(policy_drf, paper_example_over_nodes) {
  scheduler s;
  for (int i = 0; i < 3; ++i) ok(s.set_node(node("n" + std::to_string(i), 3, 6 * gib)));
  for (std::uint64_t i = 0; i < 10; ++i) {
    ok(s.submit(job(100 + i, "A", 1, 4 * gib)));
    ok(s.submit(job(200 + i, "B", 3, 1 * gib)));
  }
  auto st = started(s.decide(0));
  int a = 0, b = 0;
  for (const auto& [id, n] : st) (id < 200 ? a : b)++;
  // A (share 0, first user) goes to n0; B to n1; A (2/9 < 1/3) to n2. Each node holding
  // an A task keeps 2 CPUs and 2 GB, too little for either: fragmentation costs the pool
  // total of the paper, and DRF served the user with the smaller share each time.
  EXPECT_EQ(a, 2);
  EXPECT_EQ(b, 1);
  EXPECT_EQ(st[100], "n0");
  EXPECT_EQ(st[200], "n1");
  EXPECT_EQ(st[101], "n2");
  EXPECT_EQ(s.total(), (resources{cpus(9), 18 * gib}));
}

TEST(policy_drf, weights) {
  scheduler s;
  ok(s.set_node(node("n1", 9, 90 * gib)));
  ok(s.set_weight("heavy", 2));
  for (std::uint64_t i = 0; i < 20; ++i) {
    ok(s.submit(job(100 + i, "heavy", 1, gib)));
    ok(s.submit(job(200 + i, "light", 1, gib)));
  }
  auto st = started(s.decide(0));
  int h = 0, l = 0;
  for (const auto& [id, n] : st) (id < 200 ? h : l)++;
  EXPECT_EQ(h, 6);
  EXPECT_EQ(l, 3);
  EXPECT_NEAR(s.user("heavy")->dominant_share, 6.0 / 9 / 2, 1e-9);
  EXPECT_FALSE(s.set_weight("light", 0).has_value());
  EXPECT_FALSE(s.set_weight("light", -1).has_value());
  EXPECT_EQ(s.user("light")->weight, 1);
}

// A finished job's room goes to the user with the smallest share, not to the next job
// in submission order.
TEST(policy_drf, freed_room_goes_to_the_poorest_user) {
  scheduler s;
  ok(s.set_node(node("n1", 4, 4 * gib)));
  for (std::uint64_t i = 0; i < 4; ++i) ok(s.submit(job(10 + i, "early", 1, gib)));
  EXPECT_EQ(started(s.decide(0)).size(), 4u);
  for (std::uint64_t i = 0; i < 4; ++i) ok(s.submit(job(20 + i, "early", 1, gib)));
  ok(s.submit(job(30, "late", 1, gib)));
  EXPECT_TRUE(s.decide(1).empty());
  ok(s.finished(10, outcome::done, 2));
  auto st = started(s.decide(2));
  ASSERT_EQ(st.size(), 1u);
  EXPECT_TRUE(st.contains(30));
}

TEST(policy_drf, priority_then_submission_within_a_user) {
  scheduler s;
  ok(s.set_node(node("n1", 1, gib)));
  job_spec a = job(1, "u", 1, gib);
  a.submitted_ms = 10;
  job_spec b = job(2, "u", 1, gib);
  b.submitted_ms = 20;
  b.priority = 5;
  job_spec c = job(3, "u", 1, gib);
  c.submitted_ms = 5;
  ok(s.submit(a));
  ok(s.submit(b));
  ok(s.submit(c));
  EXPECT_EQ(s.queue(), (std::vector<std::uint64_t>{2, 3, 1}));
  std::vector<std::uint64_t> order;
  for (int t = 0; t < 3; ++t) {
    auto st = started(s.decide(t));
    ASSERT_EQ(st.size(), 1u);
    order.push_back(st.begin()->first);
    ok(s.finished(order.back(), outcome::done, t));
  }
  EXPECT_EQ(order, (std::vector<std::uint64_t>{2, 3, 1}));
}

// set_priority moves a queued job in its user's queue at once: raised, it starts before
// the jobs submitted ahead of it; lowered, after them. Refused for running, ended and
// unknown jobs, changing nothing.
TEST(policy_drf, set_priority_moves_a_queued_job) {
  scheduler s;
  ok(s.set_node(node("n1", 1, gib)));
  for (std::uint64_t id = 1; id <= 4; ++id) ok(s.submit(job(id, "u", 1, gib)));
  auto first = started(s.decide(0));
  ASSERT_EQ(first, (std::map<std::uint64_t, std::string>{{1, "n1"}}));
  EXPECT_EQ(s.queue(), (std::vector<std::uint64_t>{2, 3, 4}));

  ok(s.set_priority(4, 3));
  EXPECT_EQ(s.queue(), (std::vector<std::uint64_t>{4, 2, 3}));
  ok(s.set_priority(2, -1));
  EXPECT_EQ(s.queue(), (std::vector<std::uint64_t>{4, 3, 2}));
  ok(s.set_priority(4, 3));  // unchanged: nothing moves
  EXPECT_EQ(s.queue(), (std::vector<std::uint64_t>{4, 3, 2}));

  auto running = s.set_priority(1, 9);
  ASSERT_FALSE(running.has_value());
  EXPECT_EQ(running.error(), "job 1 is running: its priority can no longer change");
  auto unknown = s.set_priority(77, 1);
  ASSERT_FALSE(unknown.has_value());
  EXPECT_EQ(unknown.error(), "no job 77");
  EXPECT_EQ(s.queue(), (std::vector<std::uint64_t>{4, 3, 2}));

  // The pass follows the new order.
  std::vector<std::uint64_t> order;
  std::uint64_t run = 1;
  for (int t = 1; t <= 3; ++t) {
    ok(s.finished(run, outcome::done, t));
    auto st = started(s.decide(t));
    ASSERT_EQ(st.size(), 1u);
    run = st.begin()->first;
    order.push_back(run);
  }
  EXPECT_EQ(order, (std::vector<std::uint64_t>{4, 3, 2}));
  ok(s.finished(run, outcome::done, 4));
  auto ended = s.set_priority(2, 1);
  ASSERT_FALSE(ended.has_value());
  EXPECT_EQ(ended.error(), "job 2 has ended already");
}

// A job waiting for a dependency, and one cancelled, and the priority of a waiting job
// taking effect once it is ready; a user's priority does not jump DRF order between users.
TEST(policy_drf, set_priority_of_a_waiting_job_and_across_users) {
  scheduler s;
  ok(s.set_node(node("n1", 2, 2 * gib)));
  ok(s.submit(job(1, "a", 2, 2 * gib)));
  job_spec w = job(2, "a", 1, gib);
  w.after = {1};
  ok(s.submit(w));
  ok(s.submit(job(3, "a", 1, gib)));
  ok(s.submit(job(4, "b", 1, gib)));
  ok(s.submit(job(5, "b", 1, gib)));
  ASSERT_EQ(started(s.decide(0)), (std::map<std::uint64_t, std::string>{{1, "n1"}}));
  ok(s.set_priority(2, 10));  // waiting: takes effect when it becomes ready
  EXPECT_EQ(s.note(2), "waiting for 1");
  ok(s.set_priority(5, 10));  // b's second job before its first
  // a's share is 1 (job 1 runs), b's 0: b's jobs come first, 5 before 4.
  EXPECT_EQ(s.queue(), (std::vector<std::uint64_t>{5, 4, 3, 2}));
  ok(s.finished(1, outcome::done, 1));
  // Both users at share 0; a's 2 (priority 10) now ahead of a's 3.
  EXPECT_EQ(s.queue(), (std::vector<std::uint64_t>{2, 5, 3, 4}));
  auto st = started(s.decide(1));
  EXPECT_EQ(st, (std::map<std::uint64_t, std::string>{{2, "n1"}, {5, "n1"}}));
  ok(s.cancel(3));
  auto cancelled = s.set_priority(3, 1);
  ASSERT_FALSE(cancelled.has_value());
  EXPECT_EQ(cancelled.error(), "job 3 has ended already");
}

// user().backlog counts the demand DRF weighs: queued, ready, non-preemptible jobs that
// some node could hold — not running, preemptible, waiting or unschedulable ones.
TEST(policy_drf, backlog_is_ready_non_preemptible_demand) {
  scheduler s;
  ok(s.set_node(node("n1", 2, 2 * gib)));
  ok(s.submit(job(1, "u", 2, 2 * gib)));  // runs
  ok(s.submit(job(2, "u", 1, gib)));      // queued: counts
  ok(s.submit(job(3, "u", 1, gib)));      // queued: counts
  job_spec p = job(4, "u", 1, gib);
  p.preemptible = true;
  ok(s.submit(p));
  job_spec w = job(5, "u", 1, gib);
  w.after = {1};
  ok(s.submit(w));
  ok(s.submit(job(6, "u", 1, 64 * gib)));  // no node could hold it
  ASSERT_EQ(started(s.decide(0)).size(), 1u);
  auto info = s.user("u");
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->queued, 5);
  EXPECT_EQ(info->backlog, 2);
  ok(s.finished(1, outcome::done, 1));  // 5 becomes ready
  EXPECT_EQ(s.user("u")->backlog, 3);
  ok(s.set_node(node("n2", 2, 64 * gib)));  // 6 could run now
  EXPECT_EQ(s.user("u")->backlog, 4);
}

TEST(policy_drf, queue_interleaves_users_by_share) {
  scheduler s;
  ok(s.set_node(node("n1", 10, 10 * gib)));
  for (std::uint64_t i = 0; i < 3; ++i) {
    ok(s.submit(job(10 + i, "a", 1, gib)));
    ok(s.submit(job(20 + i, "b", 2, gib)));
  }
  job_spec w = job(99, "a", 1, gib);
  w.after = {10};
  ok(s.submit(w));
  // a's jobs take 0.1 of the CPUs each, b's 0.2: a, b, a, a, b, b (ties to the first user).
  EXPECT_EQ(s.queue(), (std::vector<std::uint64_t>{10, 20, 11, 12, 21, 22, 99}));
}

// ---------------------------------------------------------------------------------------
// Quotas and preemption

TEST(policy_quota, non_preemptible_jobs_stay_within_quota) {
  scheduler s;
  ok(s.set_node(node("n1", 8, 8 * gib)));
  ok(s.set_quota("alice", {cpus(2), unlimited}));
  for (std::uint64_t i = 1; i <= 5; ++i) ok(s.submit(job(i, "alice", 1, gib)));
  EXPECT_EQ(started(s.decide(0)).size(), 2u);
  EXPECT_EQ(s.note(3), "over quota: alice uses 2 CPUs, 2 GiB of 2 CPUs, unlimited memory");
  EXPECT_EQ(s.user("alice")->quota, (resources{cpus(2), unlimited}));
  EXPECT_TRUE(s.decide(1).empty());
  ok(s.finished(1, outcome::done, 2));
  auto st = started(s.decide(2));
  ASSERT_EQ(st.size(), 1u);
  EXPECT_TRUE(st.contains(3));
  // Raising the quota lets the rest in.
  ok(s.set_quota("alice", {cpus(4), unlimited}));
  EXPECT_EQ(started(s.decide(3)).size(), 2u);
  EXPECT_FALSE(s.set_quota("alice", {-1, 0}).has_value());
}

TEST(policy_quota, preemptible_jobs_fill_beyond_quota_and_are_preempted) {
  scheduler s;
  ok(s.set_node(node("n1", 4, 4 * gib)));
  ok(s.set_quota("alice", {cpus(1), unlimited}));
  for (std::uint64_t i = 1; i <= 4; ++i) {
    job_spec j = job(i, "alice", 1, gib);
    j.preemptible = true;
    ok(s.submit(j));
  }
  EXPECT_EQ(started(s.decide(0)).size(), 4u);  // beyond the 1-CPU quota: idle room
  EXPECT_EQ(s.user("alice")->usage.cpu_millis, cpus(4));

  ok(s.submit(job(10, "bob", 2, 2 * gib)));
  auto ds = s.decide(5);
  auto pre = of_kind(ds, kind::preempt);
  ASSERT_EQ(pre.size(), 2u);
  // The newest copies go first (all started at 0: the larger ids).
  EXPECT_EQ(pre[0].job, 4u);
  EXPECT_EQ(pre[1].job, 3u);
  EXPECT_EQ(pre[0].reason, "room for job 10");
  auto st = started(ds);
  ASSERT_EQ(st.size(), 1u);
  EXPECT_EQ(st[10], "n1");
  // Preempted jobs are queued again, not failed.
  EXPECT_EQ(s.note(4), "queued");
  EXPECT_EQ(s.user("alice")->running, 2);
  EXPECT_EQ(s.user("alice")->queued, 2);
  EXPECT_FALSE(s.finished(4, outcome::done, 6).has_value());  // not running any more
  // When bob's job ends, they run again.
  ok(s.finished(10, outcome::done, 7));
  EXPECT_EQ(started(s.decide(7)).size(), 2u);
}

TEST(policy_quota, a_job_over_its_own_quota_preempts_nothing) {
  scheduler s;
  ok(s.set_node(node("n1", 2, 2 * gib)));
  for (std::uint64_t i = 1; i <= 2; ++i) {
    job_spec j = job(i, "alice", 1, gib);
    j.preemptible = true;
    ok(s.submit(j));
  }
  EXPECT_EQ(started(s.decide(0)).size(), 2u);
  ok(s.set_quota("bob", {cpus(1), unlimited}));
  ok(s.submit(job(10, "bob", 1, gib)));
  ok(s.submit(job(11, "bob", 1, gib)));
  auto ds = s.decide(1);
  EXPECT_EQ(of_kind(ds, kind::preempt).size(), 1u);
  EXPECT_EQ(started(ds).size(), 1u);
  EXPECT_EQ(s.note(11), "over quota: bob uses 1 CPU, 1 GiB of 1 CPU, unlimited memory");
  // A preemptible job never preempts.
  job_spec p = job(12, "carol", 1, gib);
  p.preemptible = true;
  ok(s.submit(p));
  EXPECT_TRUE(of_kind(s.decide(2), kind::preempt).empty());
}

// ---------------------------------------------------------------------------------------
// Placement

TEST(policy_place, binpack_keeps_machines_whole) {
  scheduler s;
  ok(s.set_node(node("n1", 4, 8 * gib)));
  ok(s.set_node(node("n2", 4, 8 * gib)));
  ok(s.set_node(node("n3", 4, 8 * gib)));
  ok(s.submit(job(1, "u", 2, gib)));
  EXPECT_EQ(started(s.decide(0))[1], "n1");
  ok(s.submit(job(2, "u", 1, gib)));
  EXPECT_EQ(started(s.decide(1))[2], "n1");  // the fullest node that fits
  ok(s.submit(job(3, "u", 2, gib)));
  EXPECT_EQ(started(s.decide(2))[3], "n2");  // n1 has 1 CPU left
  ok(s.submit(job(4, "u", 1, gib)));
  EXPECT_EQ(started(s.decide(3))[4], "n1");  // fills n1; n3 stays whole
  ok(s.submit(job(5, "u", 4, gib)));
  EXPECT_EQ(started(s.decide(4))[5], "n3");
}

TEST(policy_place, spread_uses_the_emptiest_node) {
  scheduler s({.placement = mode::spread});
  ok(s.set_node(node("n1", 4, 8 * gib)));
  ok(s.set_node(node("n2", 4, 8 * gib)));
  ok(s.set_node(node("n3", 8, 8 * gib)));
  std::vector<std::string> where;
  for (std::uint64_t i = 1; i <= 4; ++i) {
    ok(s.submit(job(i, "u", 2, gib)));
    where.push_back(started(s.decide(static_cast<std::int64_t>(i)))[i]);
  }
  // n3 (8 free), n3 (6 free); then n3 has 4 CPUs and 6 GiB, n1 and n2 4 CPUs and 8 GiB:
  // the most free is n2 (ties by memory, then node order), then n1.
  EXPECT_EQ(where, (std::vector<std::string>{"n3", "n3", "n2", "n1"}));
  s.set_mode(mode::binpack);
  ok(s.submit(job(9, "u", 1, gib)));
  EXPECT_EQ(started(s.decide(9))[9], "n1");  // binpack: the least free that fits
}

TEST(policy_place, memory_is_a_constraint_too) {
  scheduler s;
  ok(s.set_node(node("small", 16, 2 * gib)));
  ok(s.set_node(node("big", 16, 64 * gib)));
  ok(s.submit(job(1, "u", 1, 32 * gib)));
  EXPECT_EQ(started(s.decide(0))[1], "big");
  ok(s.submit(job(2, "u", 1, gib)));
  EXPECT_EQ(started(s.decide(1))[2], "big");  // 15 CPUs, 32 GiB left: best fit by CPU
  ok(s.submit(job(3, "u", 15, gib)));
  EXPECT_EQ(started(s.decide(2))[3], "small");
}

TEST(policy_place, drained_nodes_get_nothing) {
  scheduler s;
  ok(s.set_node(node("n1", 4, 4 * gib)));
  node_spec n2 = node("n2", 4, 4 * gib);
  n2.drained = true;
  ok(s.set_node(n2));
  for (std::uint64_t i = 1; i <= 6; ++i) ok(s.submit(job(i, "u", 1, gib)));
  auto st = started(s.decide(0));
  EXPECT_EQ(st.size(), 4u);
  for (const auto& [id, n] : st) EXPECT_EQ(n, "n1");
  n2.drained = false;
  ok(s.set_node(n2));
  st = started(s.decide(1));
  EXPECT_EQ(st.size(), 2u);
  for (const auto& [id, n] : st) EXPECT_EQ(n, "n2");
}

// A simulated cluster of 16 arm64 and 16 amd64 nodes, some with a GPU label: every job
// lands on a node with the labels it needs, and the jobs that fit all start.
TEST(policy_place, mixed_arm64_amd64_cluster) {
  scheduler s;
  std::map<std::string, std::vector<label>> labels_of;
  for (int i = 0; i < 32; ++i) {
    std::vector<label> ls{{"arch", i % 2 ? "arm64" : "amd64"}, {"os", "linux"}};
    if (i % 8 == 0) ls.emplace_back("gpu", "a100");
    std::string name = (i % 2 ? "arm" : "x86-") + std::to_string(i);
    labels_of[name] = ls;
    ok(s.set_node(node(name, 8, 32 * gib, ls)));
  }
  std::map<std::uint64_t, std::vector<label>> needs_of;
  std::uint64_t id = 1;
  auto add = [&](std::vector<label> needs, double ncpu, int count) {
    for (int k = 0; k < count; ++k, ++id) {
      job_spec j = job(id, "u" + std::to_string(id % 3), ncpu, gib);
      j.needs = needs;
      needs_of[id] = needs;
      ok(s.submit(j));
    }
  };
  add({{"arch", "arm64"}}, 2, 40);                      // 80 of arm64's 128 CPUs
  add({{"arch", "amd64"}}, 4, 20);                      // 80 of amd64's 128 CPUs
  add({{"arch", "amd64"}, {"gpu", "a100"}}, 1, 4);      // on x86-0, x86-8, x86-16, x86-24
  add({}, 1, 50);                                       // anywhere
  add({{"arch", "riscv"}}, 1, 2);                       // nowhere
  auto st = started(s.decide(0));
  EXPECT_EQ(st.size(), 114u);
  for (const auto& [jid, n] : st) {
    const auto& have = labels_of.at(n);
    for (const label& need : needs_of.at(jid)) {
      EXPECT_NE(std::find(have.begin(), have.end(), need), have.end()) << "job " << jid << " on " << n;
    }
  }
  EXPECT_EQ(s.note(id - 1), "unschedulable: no node has arch=riscv");
  // More arm64 work than arm64 room: it waits even though amd64 nodes have room.
  add({{"arch", "arm64"}}, 8, 8);
  st = started(s.decide(1));
  EXPECT_LT(st.size(), 8u);
  for (const auto& [jid, n] : st) EXPECT_EQ(labels_of.at(n)[0].second, "arm64");
}

TEST(policy_place, unschedulable_job_waits_and_does_not_block) {
  scheduler s;
  ok(s.set_node(node("n1", 8, 32 * gib)));
  ok(s.set_node(node("n2", 8, 32 * gib)));
  ok(s.submit(job(1, "u", 1, 64 * gib)));
  ok(s.submit(job(2, "u", 1, gib)));
  ok(s.submit(job(3, "u", 16, gib)));
  job_spec both = job(4, "u", 10, 20 * gib);
  ok(s.submit(both));
  ok(s.set_node(node("cpus", 16, 1 * gib)));
  auto st = started(s.decide(0));
  EXPECT_EQ(st.size(), 2u);  // 2 (behind 1), and 3 on "cpus"
  EXPECT_TRUE(st.contains(2));
  EXPECT_EQ(st[3], "cpus");
  EXPECT_EQ(s.note(1), "unschedulable: no node has 64 GiB");
  EXPECT_EQ(s.note(4), "unschedulable: no node has both 10 CPUs and 20 GiB");
  ok(s.submit(job(5, "u", 1.5, 2 * gib)));
  job_spec lab = job(6, "u", 1, 48 * gib);
  lab.needs = {{"arch", "arm64"}};
  ok(s.submit(lab));
  ok(s.set_node(node("arm1", 4, 8 * gib, {{"arch", "arm64"}})));
  EXPECT_EQ(s.note(6), "unschedulable: no node with arch=arm64 has 48 GiB");
  EXPECT_EQ(human_cpus(1500), "1.5 CPUs");
  EXPECT_EQ(human_cpus(1000), "1 CPU");
  EXPECT_EQ(human_bytes(1536), "1.5 KiB");
  // A node that can hold it arrives: it starts.
  ok(s.set_node(node("huge", 64, 256 * gib)));
  st = started(s.decide(1));
  EXPECT_TRUE(st.contains(1));
  EXPECT_EQ(st[1], "huge");
}

// ---------------------------------------------------------------------------------------
// Backfill and reservations

// One 4-CPU node; a stream of 1-CPU jobs keeps it full. A 4-CPU job from another user
// fits nowhere: the small jobs backfill around it until it has waited reserve_after_ms;
// then it holds the node, which drains, and it starts. Without the reservation (a
// threshold beyond the run) it would never start.
std::int64_t big_job_start(std::int64_t reserve_after_ms, std::vector<std::string>* notes) {
  scheduler s({.reserve_after_ms = reserve_after_ms});
  EXPECT_TRUE(s.set_node(node("n1", 4, 16 * gib)).has_value());
  std::uint64_t next = 1;
  std::map<std::uint64_t, std::int64_t> ends;  // running small jobs → end time
  auto submit_small = [&](std::int64_t now) {
    job_spec j = job(next++, "small", 1, gib);
    j.submitted_ms = now;
    EXPECT_TRUE(s.submit(j).has_value());
  };
  for (int i = 0; i < 8; ++i) submit_small(0);
  job_spec big = job(1000, "big", 4, 4 * gib);
  big.submitted_ms = 500;
  for (std::int64_t now = 0; now <= 60'000; now += 250) {
    if (now == 500) {
      EXPECT_TRUE(s.submit(big).has_value());
    }
    for (auto it = ends.begin(); it != ends.end();) {
      if (it->second <= now) {
        EXPECT_TRUE(s.finished(it->first, outcome::done, now).has_value());
        submit_small(now);
        it = ends.erase(it);
      } else {
        ++it;
      }
    }
    for (const decision& d : s.decide(now)) {
      if (d.what != kind::start) continue;
      if (d.job == 1000) return now;
      ends[d.job] = now + 1000 + static_cast<std::int64_t>(d.job % 4) * 250;  // staggered
    }
    if (notes && now % 5000 == 0 && now > 500) notes->push_back(s.note(1000));
  }
  return -1;
}

TEST(policy_reserve, big_job_is_not_starved_by_small_ones) {
  std::vector<std::string> notes;
  std::int64_t t = big_job_start(10'000, &notes);
  ASSERT_GE(t, 10'500);     // not before its reservation...
  EXPECT_LE(t, 10'500 + 2'000);  // ...and as soon as the node drained
  ASSERT_GE(notes.size(), 2u);
  EXPECT_EQ(notes[0], "queued");  // at 5 s: backfilled around
  EXPECT_EQ(big_job_start(10'000'000, nullptr), -1);  // no reservation: starved
}

TEST(policy_reserve, reservation_goes_to_the_node_closest_to_fitting_and_is_released) {
  scheduler s({.reserve_after_ms = 100, .max_reservations = 1});
  ok(s.set_node(node("n1", 4, 16 * gib)));
  ok(s.set_node(node("n2", 4, 16 * gib)));
  ok(s.submit(job(1, "a", 3, gib)));  // n1
  ok(s.submit(job(2, "a", 2, gib)));  // n2 (n1 has 1 left)
  EXPECT_EQ(started(s.decide(0)).size(), 2u);
  ok(s.submit(job(3, "b", 4, gib)));
  ok(s.submit(job(4, "c", 4, gib)));
  EXPECT_TRUE(s.decide(50).empty());
  auto ds = s.decide(200);
  EXPECT_TRUE(ds.empty());
  EXPECT_EQ(s.note(3), "reserved on n2");  // n2 lacks 2 CPUs, n1 3
  EXPECT_EQ(s.note(4), "queued");          // the cap is 1
  EXPECT_EQ(s.queue().front(), 3u);
  // A 1-CPU job does not go to the reserved node even though it has room.
  ok(s.submit(job(5, "d", 1, gib)));
  EXPECT_EQ(started(s.decide(300))[5], "n1");
  // Draining the node gives the reservation up; the job may reserve again (n1 now).
  node_spec n2 = node("n2", 4, 16 * gib);
  n2.drained = true;
  ok(s.set_node(n2));
  EXPECT_EQ(s.note(3), "queued");
  s.decide(400);
  EXPECT_EQ(s.note(3), "reserved on n1");
  ok(s.finished(1, outcome::done, 500));
  ok(s.finished(5, outcome::done, 500));
  auto st = started(s.decide(500));
  EXPECT_EQ(st.size(), 1u);
  EXPECT_EQ(st[3], "n1");
  ok(s.cancel(4));
  EXPECT_EQ(s.note(4), "killed");
}

// ---------------------------------------------------------------------------------------
// DAGs

TEST(policy_dag, diamond_runs_in_order) {
  scheduler s;
  ok(s.set_node(node("n1", 8, 8 * gib)));
  ok(s.submit(job(1, "u", 1, gib)));
  job_spec b = job(2, "u", 1, gib), c = job(3, "u", 1, gib), d = job(4, "u", 1, gib);
  b.after = {1};
  c.after = {1};
  d.after = {2, 3};
  ok(s.submit(b));
  ok(s.submit(c));
  ok(s.submit(d));
  EXPECT_EQ(started(s.decide(0)).size(), 1u);
  EXPECT_EQ(s.note(2), "waiting for 1");
  EXPECT_EQ(s.note(4), "waiting for 2 3");
  ok(s.finished(1, outcome::done, 1));
  auto st = started(s.decide(1));
  EXPECT_EQ(st.size(), 2u);
  EXPECT_TRUE(st.contains(2) && st.contains(3));
  ok(s.finished(2, outcome::done, 2));
  EXPECT_TRUE(s.decide(2).empty());
  EXPECT_EQ(s.note(4), "waiting for 3");
  ok(s.finished(3, outcome::done, 3));
  EXPECT_TRUE(started(s.decide(3)).contains(4));
  // A job after one that is done already runs at once.
  job_spec e = job(5, "u", 1, gib);
  e.after = {1};
  ok(s.submit(e));
  EXPECT_TRUE(started(s.decide(4)).contains(5));
}

TEST(policy_dag, failure_propagates_transitively) {
  scheduler s;
  ok(s.set_node(node("n1", 8, 8 * gib)));
  ok(s.submit(job(1, "u", 1, gib)));
  job_spec b = job(2, "u", 1, gib), c = job(3, "u", 1, gib), d = job(4, "u", 1, gib);
  b.after = {1};
  c.after = {2};
  d.after = {3};
  ok(s.submit(b));
  ok(s.submit(c));
  ok(s.submit(d));
  ok(s.submit(job(5, "u", 1, gib)));  // unrelated
  EXPECT_EQ(started(s.decide(0)).size(), 2u);
  ok(s.finished(1, outcome::failed, 1));
  auto fails = of_kind(s.decide(1), kind::fail);
  ASSERT_EQ(fails.size(), 3u);
  std::map<std::uint64_t, std::string> why;
  for (const decision& f : fails) why[f.job] = f.reason;
  EXPECT_EQ(why[2], "dependency 1 failed");
  EXPECT_EQ(why[3], "dependency 2 failed");
  EXPECT_EQ(why[4], "dependency 3 failed");
  EXPECT_EQ(s.note(4), "failed");
  EXPECT_EQ(s.user("u")->queued, 0);
  // Submitting after a failed job: accepted, fails at the next decide.
  job_spec late = job(6, "u", 1, gib);
  late.after = {3};
  ok(s.submit(late));
  auto f2 = of_kind(s.decide(2), kind::fail);
  ASSERT_EQ(f2.size(), 1u);
  EXPECT_EQ(f2[0].reason, "dependency 3 failed");
  // Killed (cancel of a queued job, or finished killed) fails dependents too.
  ok(s.set_node(node("n1", 0, 0)));  // nothing more starts
  ok(s.submit(job(7, "u", 1, gib)));
  job_spec h = job(8, "u", 1, gib);
  h.after = {7};
  ok(s.submit(h));
  ok(s.cancel(7));
  f2 = of_kind(s.decide(3), kind::fail);
  ASSERT_EQ(f2.size(), 1u);
  EXPECT_EQ(f2[0].job, 8u);
  EXPECT_EQ(f2[0].reason, "dependency 7 failed");
  EXPECT_EQ(s.note(7), "killed");
}

TEST(policy_dag, bad_submissions_change_nothing) {
  scheduler s;
  ok(s.set_node(node("n1", 8, 8 * gib)));
  ok(s.submit(job(1, "u", 1, gib)));
  auto dup = s.submit(job(1, "u", 1, gib));
  ASSERT_FALSE(dup.has_value());
  EXPECT_EQ(dup.error(), "job 1 exists already");
  job_spec j = job(2, "u", 1, gib);
  j.after = {1, 77};
  auto unknown = s.submit(j);
  ASSERT_FALSE(unknown.has_value());
  EXPECT_EQ(unknown.error(), "job 2: after 77: no such job");
  j.after = {2};
  auto self = s.submit(j);
  ASSERT_FALSE(self.has_value());
  EXPECT_EQ(self.error(), "job 2 cannot run after itself (a cycle)");
  EXPECT_FALSE(s.submit(job(3, "", 1, gib)).has_value());
  EXPECT_FALSE(s.submit(job(3, "u", -1, gib)).has_value());
  EXPECT_EQ(s.queue(), (std::vector<std::uint64_t>{1}));
  EXPECT_EQ(s.user("u")->queued, 1);
  // Job 2 may be submitted properly now; nothing of the failed attempts remains.
  j.after = {1};
  ok(s.submit(j));
  EXPECT_EQ(started(s.decide(0)).size(), 1u);
}

// 10 000 jobs: a fan-out from one root to 9 998 jobs and a fan-in to one sink; then a
// chain of 10 000 whose head fails. Both go through without quadratic work (the bench
// measures speed; here the point is that the whole DAG is handled, and no recursion
// 10 000 deep).
TEST(policy_dag, ten_thousand_jobs) {
  scheduler s;
  for (int i = 0; i < 100; ++i) ok(s.set_node(node("n" + std::to_string(i), 64, 256 * gib)));
  ok(s.submit(job(1, "u", 1, gib)));
  job_spec sink = job(10'000, "u", 1, gib);
  for (std::uint64_t i = 2; i < 10'000; ++i) {
    job_spec j = job(i, "u", 0.5, gib / 4);
    j.after = {1};
    ok(s.submit(j));
    sink.after.push_back(i);
  }
  ok(s.submit(sink));
  EXPECT_EQ(started(s.decide(0)).size(), 1u);
  ok(s.finished(1, outcome::done, 1));
  auto middle = started(s.decide(1));
  ASSERT_EQ(middle.size(), 9'998u);  // 100 nodes × 128 half-CPU slots: all at once
  EXPECT_EQ(s.note(10'000), "waiting for 2 3 4 5 6 and 9993 more");
  for (const auto& [id, n] : middle) ok(s.finished(id, outcome::done, 2));
  auto last = started(s.decide(2));
  ASSERT_EQ(last.size(), 1u);
  EXPECT_TRUE(last.contains(10'000));

  scheduler c;
  ok(c.set_node(node("n1", 1, gib)));
  ok(c.submit(job(1, "u", 1, gib)));
  for (std::uint64_t i = 2; i <= 10'000; ++i) {
    job_spec j = job(i, "u", 1, gib);
    j.after = {i - 1};
    ok(c.submit(j));
  }
  EXPECT_EQ(started(c.decide(0)).size(), 1u);
  ok(c.finished(1, outcome::failed, 1));
  auto fails = of_kind(c.decide(1), kind::fail);
  ASSERT_EQ(fails.size(), 9'999u);
  EXPECT_EQ(fails.back().job, 10'000u);
  EXPECT_EQ(fails.back().reason, "dependency 9999 failed");
}

// ---------------------------------------------------------------------------------------
// Speculation: a straggler gets a backup copy; the first copy done wins.

struct spec_cluster {
  scheduler s{config{.speculate_factor = 2.0, .speculate_min_done = 3, .speculate_min_ms = 0}};
  spec_cluster() {
    for (int i = 1; i <= 5; ++i) ok(s.set_node(node("n" + std::to_string(i), 1, gib)));
    for (std::uint64_t i = 1; i <= 4; ++i) {
      job_spec j = job(i, "u", 1, gib);
      j.group = "array7";
      j.speculate = true;
      ok(s.submit(j));
    }
    EXPECT_EQ(started(s.decide(0)).size(), 4u);
    // three siblings done after 8, 10 and 12 s: median 10 s
    ok(s.finished(1, outcome::done, 8'000));
    ok(s.finished(2, outcome::done, 10'000));
    ok(s.finished(3, outcome::done, 12'000));
    EXPECT_TRUE(s.decide(12'000).empty());
    ok(s.submit(job(50, "other", 1, gib)));  // takes one of the free nodes
    EXPECT_EQ(started(s.decide(12'500)).size(), 1u);
  }
};

TEST(policy_speculate, backup_copy_wins) {
  spec_cluster c;
  scheduler& s = c.s;
  EXPECT_TRUE(s.decide(19'999).empty());  // 2 × median = 20 s
  auto ds = s.decide(20'000);
  ASSERT_EQ(ds.size(), 1u);
  EXPECT_EQ(ds[0].what, kind::backup);
  EXPECT_EQ(ds[0].job, 4u);
  EXPECT_NE(ds[0].node, "n4");  // another node than the straggler's
  EXPECT_EQ(ds[0].reason, "straggler: running 20 s on n4, median of 3 done in array7 is 10 s");
  std::string backup_node = ds[0].node;
  EXPECT_EQ(s.note(4), "running on n4, backup on " + backup_node);
  EXPECT_TRUE(s.decide(60'000).empty());  // one backup per job
  auto two = s.finished(4, outcome::done, 25'000);
  ASSERT_FALSE(two.has_value());  // which copy?
  ok(s.finished(4, outcome::done, 25'000, backup_node));
  ds = s.decide(25'000);
  ASSERT_EQ(ds.size(), 1u);
  EXPECT_EQ(ds[0], (decision{kind::preempt, 4, "n4", "the copy on " + backup_node + " finished first"}));
  EXPECT_EQ(s.note(4), "done");
  EXPECT_EQ(s.user("u")->usage, (resources{}));
}

TEST(policy_speculate, original_wins_and_failed_copy_is_dropped) {
  spec_cluster c;
  scheduler& s = c.s;
  auto ds = s.decide(21'000);
  ASSERT_EQ(ds.size(), 1u);
  std::string backup_node = ds[0].node;
  // The backup's node dies: the original runs on.
  ok(s.finished(4, outcome::lost, 22'000, backup_node));
  EXPECT_EQ(s.note(4), "running on n4");
  ok(s.finished(4, outcome::done, 23'000, "n4"));
  EXPECT_TRUE(s.decide(23'000).empty());
  EXPECT_EQ(s.note(4), "done");
}

// A straggler that finds no free room waits for it: room that the DRF pass gives to a
// queued job does not wake it, room left over does, at the first decide() after (not a
// recheck period later).
TEST(policy_speculate, straggler_waits_for_free_room) {
  spec_cluster c;
  scheduler& s = c.s;
  for (std::uint64_t id = 51; id <= 54; ++id) ok(s.submit(job(id, "other", 1, gib)));
  EXPECT_EQ(started(s.decide(13'000)).size(), 3u);  // every node is busy; 54 queued
  EXPECT_TRUE(s.decide(20'000).empty());            // a straggler, but no room
  ok(s.finished(51, outcome::done, 20'300));
  auto ds = s.decide(20'300);  // the room goes to the queued job, not to a backup
  ASSERT_EQ(ds.size(), 1u);
  EXPECT_EQ(ds[0].what, kind::start);
  EXPECT_EQ(ds[0].job, 54u);
  EXPECT_EQ(s.check_invariants(), "");
  ok(s.finished(52, outcome::done, 20'500));
  ds = s.decide(20'500);  // free room left: the backup starts now
  ASSERT_EQ(ds.size(), 1u);
  EXPECT_EQ(ds[0].what, kind::backup);
  EXPECT_EQ(ds[0].job, 4u);
  EXPECT_EQ(ds[0].reason, "straggler: running 20.500 s on n4, median of 3 done in array7 is 10 s");
  EXPECT_EQ(s.check_invariants(), "");
}

TEST(policy_speculate, no_backup_without_the_flag_or_siblings) {
  scheduler s({.speculate_min_done = 1, .speculate_min_ms = 0});
  for (int i = 1; i <= 4; ++i) ok(s.set_node(node("n" + std::to_string(i), 1, gib)));
  job_spec a = job(1, "u", 1, gib), b = job(2, "u", 1, gib), c = job(3, "u", 1, gib);
  a.group = b.group = c.group = "g";
  c.speculate = true;  // a and b are not speculated
  ok(s.submit(a));
  ok(s.submit(b));
  ok(s.submit(c));
  s.decide(0);
  EXPECT_TRUE(s.decide(100'000).empty());  // no done sibling yet
  ok(s.finished(1, outcome::done, 1'000));
  auto ds = s.decide(100'000);
  ASSERT_EQ(ds.size(), 1u);  // only c, the flagged one
  EXPECT_EQ(ds[0].job, 3u);
  EXPECT_EQ(ds[0].what, kind::backup);
}

// ---------------------------------------------------------------------------------------
// Nodes coming and going; lost runs

TEST(policy_nodes, lost_jobs_are_requeued_elsewhere) {
  scheduler s;
  ok(s.set_node(node("n1", 2, 2 * gib)));
  ok(s.set_node(node("n2", 2, 2 * gib)));
  for (std::uint64_t i = 1; i <= 4; ++i) ok(s.submit(job(i, "u", 1, gib)));
  auto st = started(s.decide(0));
  ASSERT_EQ(st.size(), 4u);
  s.remove_node("n1");
  EXPECT_EQ(s.total(), (resources{cpus(2), 2 * gib}));
  EXPECT_TRUE(s.decide(1).empty());
  for (const auto& [id, n] : st) {
    if (n == "n1") ok(s.finished(id, outcome::lost, 2));
  }
  EXPECT_EQ(s.user("u")->queued, 2);
  EXPECT_TRUE(s.decide(2).empty());  // n2 is full
  ok(s.set_node(node("n3", 4, 4 * gib)));
  st = started(s.decide(3));
  EXPECT_EQ(st.size(), 2u);
  for (const auto& [id, n] : st) EXPECT_EQ(n, "n3");
  // A failed start is reported lost: the job goes back and starts again.
  std::uint64_t one = st.begin()->first;
  ok(s.finished(one, outcome::lost, 4));
  EXPECT_EQ(started(s.decide(4))[one], "n3");
  // Bad reports change nothing.
  EXPECT_FALSE(s.finished(99, outcome::done, 5).has_value());
  EXPECT_FALSE(s.finished(one, outcome::done, 5, "n1").has_value());
  EXPECT_FALSE(s.cancel(one).has_value());
  EXPECT_FALSE(s.set_node(node("", 1, 1)).has_value());
  EXPECT_EQ(s.users(), (std::vector<std::string>{"u"}));
  EXPECT_EQ(s.user("u")->running, 4);
}

}  // namespace

// ---------------------------------------------------------------------------------------
// A random workload checked against a model kept by the test: the decisions never put
// more on a node than it has, never start a job before its predecessors are done, never
// let non-preemptible jobs exceed a quota, agree with user(); and, with reservations
// off, once decide() has nothing more to say, no ready job that is within its quota
// could start anywhere (backfill is complete, preemption included).
namespace model {

struct mjob {
  job_spec spec;
  std::vector<std::string> copies;  // nodes
  bool ended = false;
  outcome how = outcome::done;
  std::int64_t deferred_until = 0;  // defer(): not to start before
};

struct mnode {
  node_spec spec;
  bool present = true;
};

void run(std::uint32_t seed, bool reservations) {
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<unsigned>(n)); };
  scheduler s({.reserve_after_ms = reservations ? 2'000 : std::int64_t{1} << 60,
               .max_reservations = 3,
               .speculate_factor = 1.5,
               .speculate_min_done = 2,
               .speculate_min_ms = 100});
  std::map<std::string, mnode> nodes;
  for (int i = 0; i < 12; ++i) {
    std::string name = "n" + std::to_string(i);
    nodes[name] = mnode{node(name, 4 + 4 * (i % 3), (8 + 8 * (i % 2)) * gib,
                             {{"arch", i % 2 ? "arm64" : "amd64"}})};
    ok(s.set_node(nodes[name].spec));
  }
  std::map<std::string, resources> quota{{"u0", {cpus(6), unlimited}}, {"u1", {cpus(4), 8 * gib}}};
  for (const auto& [u, q] : quota) ok(s.set_quota(u, q));
  std::map<std::uint64_t, mjob> jobs;
  std::uint64_t next_id = 1;
  std::int64_t now = 0;
  std::map<kind, int> count;
  bool seen_reserved = false;
  int deferrals = 0, deferred_seen = 0;

  // (used, preemptible part) per node, from the model's copies
  auto usage_by_node = [&] {
    std::map<std::string, std::pair<resources, resources>> m;
    for (const auto& [id, j] : jobs) {
      for (const std::string& c : j.copies) {
        auto& [r, p] = m[c];
        r = {r.cpu_millis + j.spec.need.cpu_millis, r.mem_bytes + j.spec.need.mem_bytes};
        if (j.spec.preemptible) p = {p.cpu_millis + j.spec.need.cpu_millis, p.mem_bytes + j.spec.need.mem_bytes};
      }
    }
    return m;
  };
  auto deps_done = [&](const mjob& j) {
    for (std::uint64_t a : j.spec.after) {
      if (!jobs.at(a).ended || jobs.at(a).how != outcome::done) return false;
    }
    return true;
  };
  auto np_usage = [&](const std::string& u) {
    resources r;
    for (const auto& [id, j] : jobs) {
      if (j.spec.user != u || j.spec.preemptible) continue;
      for (std::size_t k = 0; k < j.copies.size(); ++k) {
        r = {r.cpu_millis + j.spec.need.cpu_millis, r.mem_bytes + j.spec.need.mem_bytes};
      }
    }
    return r;
  };
  auto apply = [&](const std::vector<decision>& ds) {
    for (const decision& d : ds) {
      ++count[d.what];
      mjob& j = jobs.at(d.job);
      switch (d.what) {
        case kind::start:
        case kind::backup:
          ASSERT_FALSE(j.ended);
          ASSERT_TRUE(deps_done(j)) << "job " << d.job << " started before its predecessors";
          ASSERT_TRUE(nodes.at(d.node).present && !nodes.at(d.node).spec.drained);
          for (const label& l : j.spec.needs) {
            const auto& have = nodes.at(d.node).spec.labels;
            ASSERT_NE(std::find(have.begin(), have.end(), l), have.end());
          }
          ASSERT_EQ(d.what == kind::start, j.copies.empty());
          ASSERT_LE(j.deferred_until, now) << "job " << d.job << " started while deferred";
          j.copies.push_back(d.node);
          break;
        case kind::preempt: {
          auto it = std::find(j.copies.begin(), j.copies.end(), d.node);
          ASSERT_NE(it, j.copies.end());
          j.copies.erase(it);
          break;
        }
        case kind::fail:
          ASSERT_TRUE(j.copies.empty());
          j.ended = true;
          j.how = outcome::failed;
          break;
      }
    }
    auto by_node = usage_by_node();
    for (const auto& [name, n] : nodes) {
      auto [r, p] = by_node[name];
      if (!n.present) continue;
      ASSERT_LE(r.cpu_millis, n.spec.capacity.cpu_millis) << name;
      ASSERT_LE(r.mem_bytes, n.spec.capacity.mem_bytes) << name;
    }
    for (const auto& [u, q] : quota) {
      resources r = np_usage(u);
      ASSERT_LE(r.cpu_millis, q.cpu_millis) << u;
      ASSERT_LE(r.mem_bytes, q.mem_bytes) << u;
    }
  };

  const resources sizes[] = {{500, gib / 2}, {cpus(1), gib}, {cpus(2), 4 * gib}, {cpus(4), 2 * gib},
                             {cpus(8), 12 * gib}, {cpus(3), 15 * gib}};
  for (int step = 0; step < 1'500; ++step) {
    now += 1 + pick(200);
    int what = pick(100);
    if (what < 45) {
      job_spec j = job(next_id++, "u" + std::to_string(pick(4)), 0, 0);
      j.need = sizes[pick(6)];
      j.submitted_ms = now;
      j.priority = pick(3);
      j.preemptible = pick(5) == 0;
      if (pick(4) == 0) j.needs = {{"arch", pick(2) ? "arm64" : "amd64"}};
      j.group = "g" + std::to_string(j.id % 5);
      j.speculate = pick(3) == 0;
      if (pick(8) == 0 && next_id > 3) j.after = {static_cast<std::uint64_t>(1 + pick(static_cast<int>(next_id) - 2))};
      ok(s.submit(j));
      jobs[j.id] = mjob{.spec = j};
    } else if (what < 90) {
      std::vector<std::uint64_t> running;
      for (const auto& [id, j] : jobs) {
        if (!j.copies.empty()) running.push_back(id);
      }
      if (running.empty()) continue;
      mjob& j = jobs.at(running[pick(static_cast<int>(running.size()))]);
      int o = pick(20);
      outcome how = o < 15 ? outcome::done : o < 17 ? outcome::failed : o < 19 ? outcome::lost : outcome::killed;
      std::string copy = j.copies[0];
      ok(s.finished(j.spec.id, how, now, copy));
      j.copies.erase(j.copies.begin());
      if (how == outcome::killed) j.copies.clear();
      if (j.copies.empty() && how != outcome::lost) {
        j.ended = true;
        j.how = how;
      } else if (how == outcome::done) {
        j.ended = true;  // the other copies come back as preempt decisions
        j.how = how;
      } else if (j.copies.empty() && pick(2) == 0) {
        // Lost because its start failed for a reason of its own: it waits a while.
        j.deferred_until = now + 1 + pick(400);
        ok(s.defer(j.spec.id, j.deferred_until));
        ++deferrals;
      }
    } else if (what < 94) {
      std::vector<std::uint64_t> waiting;
      for (const auto& [id, j] : jobs) {
        if (!j.ended && j.copies.empty()) waiting.push_back(id);
      }
      if (waiting.empty()) continue;
      mjob& j = jobs.at(waiting[pick(static_cast<int>(waiting.size()))]);
      if (pick(2) == 0) {  // a new priority: the job moves in its user's queue
        j.spec.priority = pick(5) - 1;
        ok(s.set_priority(j.spec.id, j.spec.priority));
      } else {
        ok(s.cancel(j.spec.id));
        j.ended = true;
        j.how = outcome::killed;
      }
    } else {
      auto it = nodes.begin();
      std::advance(it, pick(static_cast<int>(nodes.size())));
      mnode& n = it->second;
      if (what < 97) {
        n.spec.drained = !n.spec.drained;
        n.present = true;
        ok(s.set_node(n.spec));
      } else if (n.present) {
        s.remove_node(n.spec.name);
        n.present = false;
        for (auto& [id, j] : jobs) {  // the caller reports the node's runs lost
          while (std::find(j.copies.begin(), j.copies.end(), n.spec.name) != j.copies.end()) {
            ok(s.finished(id, outcome::lost, now, n.spec.name));
            j.copies.erase(std::find(j.copies.begin(), j.copies.end(), n.spec.name));
          }
        }
      } else {
        n.present = true;
        ok(s.set_node(n.spec));
      }
    }
    // Settle: decide until there is nothing more to do.
    for (int round = 0; round < 4; ++round) {
      auto ds = s.decide(now);
      apply(ds);
      if (ds.empty()) break;
    }
    if (testing::Test::HasFatalFailure()) return;
    ASSERT_EQ(s.check_invariants(), "") << "step " << step;
    auto by_node = usage_by_node();
    for (const auto& [id, j] : jobs) {
      std::string why = s.note(id);
      seen_reserved |= why.starts_with("reserved on ");
      if (j.ended) {
        ASSERT_EQ(why, j.how == outcome::done ? "done" : j.how == outcome::killed ? "killed" : "failed") << id;
        continue;
      }
      if (!j.copies.empty()) {
        ASSERT_EQ(why.substr(0, 11), "running on ") << id;
        continue;
      }
      if (j.deferred_until > now) {
        ASSERT_EQ(why, "deferred after a failed start") << id;
        ++deferred_seen;
        continue;
      }
      if (reservations || !deps_done(j)) continue;
      if (!j.spec.preemptible && quota.contains(j.spec.user)) {
        resources r = np_usage(j.spec.user), q = quota.at(j.spec.user);
        if (r.cpu_millis + j.spec.need.cpu_millis > q.cpu_millis || r.mem_bytes + j.spec.need.mem_bytes > q.mem_bytes) {
          ASSERT_TRUE(why.starts_with("over quota:") || why.starts_with("unschedulable:")) << id << ": " << why;
          continue;
        }
      }
      for (const auto& [name, n] : nodes) {
        if (!n.present || n.spec.drained) continue;
        bool labels_ok = std::all_of(j.spec.needs.begin(), j.spec.needs.end(), [&](const label& l) {
          return std::find(n.spec.labels.begin(), n.spec.labels.end(), l) != n.spec.labels.end();
        });
        if (!labels_ok) continue;
        auto [r, p] = by_node[name];
        resources room = n.spec.capacity;
        room = {room.cpu_millis - r.cpu_millis, room.mem_bytes - r.mem_bytes};
        if (!j.spec.preemptible) room = {room.cpu_millis + p.cpu_millis, room.mem_bytes + p.mem_bytes};
        ASSERT_FALSE(j.spec.need.cpu_millis <= room.cpu_millis && j.spec.need.mem_bytes <= room.mem_bytes)
            << "job " << id << " (" << why << ") could start on " << name << " at step " << step;
      }
    }
    for (int u = 0; u < 4; ++u) {
      std::string name = "u" + std::to_string(u);
      auto info = s.user(name);
      if (!info) continue;
      resources r;
      int running = 0;
      for (const auto& [id, j] : jobs) {
        if (j.spec.user != name) continue;
        running += !j.copies.empty();
        for (std::size_t k = 0; k < j.copies.size(); ++k) {
          r = {r.cpu_millis + j.spec.need.cpu_millis, r.mem_bytes + j.spec.need.mem_bytes};
        }
      }
      ASSERT_EQ(info->usage, r) << name;
      ASSERT_EQ(info->running, running) << name;
    }
  }
  // The workload did exercise what is checked.
  EXPECT_GT(count[kind::start], 300);
  EXPECT_GT(count[kind::preempt], 0);
  EXPECT_GT(count[kind::fail], 0);
  EXPECT_GT(count[kind::backup], 0);
  EXPECT_GT(deferrals, 10);
  EXPECT_GT(deferred_seen, 0);
  if (reservations) {
    EXPECT_TRUE(seen_reserved);
  }
  std::printf("seed %u: %d starts, %d preempts, %d fails, %d backups, %d deferrals\n", seed, count[kind::start],
              count[kind::preempt], count[kind::fail], count[kind::backup], deferrals);
}


// ---------------------------------------------------------------------------------------
// defer: a job whose start failed for a reason of its own waits out of its queue

// A deferred job is not placed before its time, whatever else happens (other users'
// jobs start in the room), then comes back with its place; cancel and set_priority take
// it as a queued job; errors change nothing.
TEST(policy_defer, a_deferred_job_waits_its_time_and_others_go_on) {
  scheduler s;
  ok(s.set_node(node("n1", 2, 4 * gib)));
  ok(s.submit(job(1, "mallory", 1, gib)));
  EXPECT_EQ(started(s.decide(0)), (std::map<std::uint64_t, std::string>{{1, "n1"}}));
  // Its start failed on n1 for a reason of its own: lost, then deferred for 1 s.
  ok(s.finished(1, outcome::lost, 5, "n1"));
  ok(s.defer(1, 1005));
  EXPECT_EQ(s.note(1), "deferred after a failed start");
  EXPECT_EQ(s.queue(), std::vector<std::uint64_t>{1});
  EXPECT_EQ(s.user("mallory")->queued, 1);
  EXPECT_TRUE(s.decide(10).empty());
  // Another user's job takes n1 meanwhile.
  ok(s.submit(job(2, "alice", 1, gib)));
  EXPECT_EQ(started(s.decide(20)), (std::map<std::uint64_t, std::string>{{2, "n1"}}));
  EXPECT_TRUE(s.decide(1004).empty());
  EXPECT_EQ(s.check_invariants(), "");
  EXPECT_EQ(started(s.decide(1005)), (std::map<std::uint64_t, std::string>{{1, "n1"}}));
  EXPECT_EQ(s.check_invariants(), "");

  // Errors: running, unknown, ended; a job waiting for its dependencies.
  EXPECT_FALSE(s.defer(1, 5000).has_value());
  EXPECT_FALSE(s.defer(99, 5000).has_value());
  ok(s.submit(job(3, "alice", 1, gib)));
  ok(s.submit(job_spec{.id = 4, .user = "alice", .need = {cpus(1), gib}, .after = {3}, .submitted_ms = 4}));
  EXPECT_FALSE(s.defer(4, 5000).has_value());
  EXPECT_EQ(s.note(4), "waiting for 3");
  // Deferred again, its time moves; set_priority and cancel work on it.
  ok(s.defer(3, 3000));
  ok(s.defer(3, 6000));
  ok(s.set_priority(3, 5));
  EXPECT_TRUE(s.decide(4000).empty());
  EXPECT_EQ(s.check_invariants(), "");
  ok(s.cancel(3));
  EXPECT_EQ(s.note(3), "killed");
  EXPECT_FALSE(s.defer(3, 7000).has_value());
  // Its dependent failed with it, and nothing comes back at 6000.
  auto ds = s.decide(6000);
  EXPECT_EQ(of_kind(ds, kind::fail).size(), 1u);
  EXPECT_TRUE(of_kind(ds, kind::start).empty());
  EXPECT_EQ(s.check_invariants(), "");
}

// ---------------------------------------------------------------------------------------
// adopt: a copy the policy did not place runs on a node that came back (sched/reconcile.cpp)

// A queued job taken back on its node runs there without a start decision; a running job
// given a second copy ends with whichever copy the caller reports done, and the other is
// preempted. Errors change nothing.
TEST(policy_adopt, queued_job_runs_there_and_running_job_gets_a_second_copy) {
  scheduler s;
  ok(s.set_node(node("n1", 1, 4 * gib)));
  ok(s.set_node(node("n2", 1, 4 * gib)));
  ok(s.submit(job(1, "alice", 1, gib)));
  ok(s.submit(job(2, "alice", 1, gib)));
  ok(s.submit(job(3, "alice", 1, gib)));
  auto first = started(s.decide(1));
  ASSERT_EQ(first.size(), 2u);  // 1 and 2; 3 waits for room
  // Job 3 is queued: taking it back on n2 (over its free room: it runs already).
  ok(s.adopt(3, "n2", 2));
  EXPECT_TRUE(s.decide(3).empty());
  EXPECT_TRUE(s.queue().empty());
  EXPECT_EQ(s.check_invariants(), "");
  EXPECT_FALSE(s.adopt(3, "n2", 4).has_value());      // a copy there already
  EXPECT_FALSE(s.adopt(3, "n9", 4).has_value());      // no such node
  EXPECT_FALSE(s.adopt(99, "n1", 4).has_value());     // no such job
  // Job 1 runs on first[1]; a second copy on the other node, which finishes first.
  std::string other = first[1] == "n1" ? "n2" : "n1";
  ok(s.adopt(1, other, 5));
  ok(s.finished(1, outcome::done, 6, other));
  auto pre = of_kind(s.decide(7), kind::preempt);
  ASSERT_EQ(pre.size(), 1u);
  EXPECT_EQ(pre[0].job, 1u);
  EXPECT_EQ(pre[0].node, first[1]);
  ok(s.finished(3, outcome::done, 8, "n2"));
  EXPECT_FALSE(s.adopt(3, "n1", 9).has_value());      // ended
  EXPECT_EQ(s.check_invariants(), "");
}

}  // namespace model

TEST(policy_model, random_workload_backfill_is_complete) {
  for (std::uint32_t seed = 1; seed <= 4; ++seed) model::run(seed, false);
}

TEST(policy_model, random_workload_with_reservations) {
  for (std::uint32_t seed = 11; seed <= 14; ++seed) model::run(seed, true);
}
