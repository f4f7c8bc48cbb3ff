// Compiled evaluator of hwflow.evolve (see evaluator.py for the contract; the numpy
// NumpyEvaluator there is the reference this must match integer for integer).
//
// Node rows are W machine words: the operand-pair table, then the energy stream. A child
// is scored against the parent: only active gates downstream of a changed gene (or not
// kept by the parent) are recomputed, into a scratch buffer, their stream words first:
// a child skipped on energy never needs its table words. `keep` swaps the scratch with the
// generation's best, `accept` copies the best's recomputed rows into the parent. Buffers
// are reused from child to child (no allocation per child once warm).

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

namespace py = pybind11;
using u64 = uint64_t;
using i64 = int64_t;

static const int N_IN = 18, N_OUT = 16, FIELDS = 4;
static const int ARITY[11] = {1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3};

template <class F>
static inline void apply(u64* __restrict y, const u64* __restrict a, const u64* __restrict b,
                         const u64* __restrict s, int w, F f) {
  for (int i = 0; i < w; ++i) y[i] = f(a[i], b[i], s[i]);
}

static void gate(int kind, u64* y, const u64* a, const u64* b, const u64* s, int w) {
  switch (kind) {
    case 0: apply(y, a, b, s, w, [](u64 x, u64, u64) { return x; }); break;
    case 1: apply(y, a, b, s, w, [](u64 x, u64, u64) { return ~x; }); break;
    case 2: apply(y, a, b, s, w, [](u64 x, u64 z, u64) { return x & z; }); break;
    case 3: apply(y, a, b, s, w, [](u64 x, u64 z, u64) { return ~(x & z); }); break;
    case 4: apply(y, a, b, s, w, [](u64 x, u64 z, u64) { return x | z; }); break;
    case 5: apply(y, a, b, s, w, [](u64 x, u64 z, u64) { return ~(x | z); }); break;
    case 6: apply(y, a, b, s, w, [](u64 x, u64 z, u64) { return x ^ z; }); break;
    case 7: apply(y, a, b, s, w, [](u64 x, u64 z, u64) { return ~(x ^ z); }); break;
    case 8: apply(y, a, b, s, w, [](u64 x, u64 z, u64) { return x & ~z; }); break;
    case 9: apply(y, a, b, s, w, [](u64 x, u64 z, u64) { return x | ~z; }); break;
    default: apply(y, a, b, s, w, [](u64 x, u64 z, u64 t) { return (z & t) | (x & ~t); });
  }
}

static i64 toggles(const u64* x, int w) {
  i64 t = 0;
  for (int i = 0; i < w; ++i) t += __builtin_popcountll((x[i] ^ (x[i] >> 1)) & 0x7FFFFFFFFFFFFFFFULL);
  for (int i = 0; i + 1 < w; ++i) t += (int)((x[i] >> 63) ^ (x[i + 1] & 1));
  return t;
}

// Python's random.Random (MT19937, _randommodule.c), so that whole generations can run
// here on the search's own generator: the state travels as getstate()'s 625 integers.
struct PyRandom {
  uint32_t mt[624];
  int index = 624;

  uint32_t next() {
    static const uint32_t mag01[2] = {0u, 0x9908b0dfu};
    if (index >= 624) {
      int kk = 0;
      uint32_t y;
      for (; kk < 624 - 397; ++kk) {
        y = (mt[kk] & 0x80000000u) | (mt[kk + 1] & 0x7fffffffu);
        mt[kk] = mt[kk + 397] ^ (y >> 1) ^ mag01[y & 1u];
      }
      for (; kk < 623; ++kk) {
        y = (mt[kk] & 0x80000000u) | (mt[kk + 1] & 0x7fffffffu);
        mt[kk] = mt[kk + (397 - 624)] ^ (y >> 1) ^ mag01[y & 1u];
      }
      y = (mt[623] & 0x80000000u) | (mt[0] & 0x7fffffffu);
      mt[623] = mt[396] ^ (y >> 1) ^ mag01[y & 1u];
      index = 0;
    }
    uint32_t y = mt[index++];
    y ^= (y >> 11);
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= (y >> 18);
    return y;
  }

  i64 randrange(i64 n) {  // n in [1, 2^32): _randbelow_with_getrandbits
    int k = 64 - __builtin_clzll((u64)n);
    uint32_t r;
    do r = next() >> (32 - k);
    while ((i64)r >= n);
    return r;
  }
};

// Python's int / int for n >= 0, d > 0: the correctly rounded quotient (55-56 quotient
// bits, a sticky bit for the remainder, one rounding by the conversion to double).
static double div_round(unsigned __int128 n, u64 d) {
  if ((n >> 53) == 0 && (d >> 53) == 0) return (double)(u64)n / (double)d;
  u64 hi = (u64)(n >> 64);
  int nb = hi ? 128 - __builtin_clzll(hi) : 64 - __builtin_clzll((u64)n);
  int db = 64 - __builtin_clzll(d);
  int shift = nb - db - 55;
  unsigned __int128 num = n, den = d;
  if (shift < 0) num <<= -shift;
  else den <<= shift;
  u64 x = (u64)(num / den) | (u64)(num % den != 0);
  return std::ldexp((double)x, shift);
}

// problem.Problem.std, float for float: sqrt(max(s2 / P - (s1 / P)^2, 0)).
static double py_std(i64 s1, __int128 s2, i64 outputs) {
  unsigned __int128 mag = s1 < 0 ? (unsigned __int128)0 - (unsigned __int128)s1 : (unsigned __int128)s1;
  double mean = div_round(mag, (u64)outputs);
  if (s1 < 0) mean = -mean;
  volatile double sq = mean * mean;  // as Python: a product, then a difference (no fused FMA)
  double v = div_round((unsigned __int128)s2, (u64)outputs) - sq;
  return std::sqrt(0.0 > v ? 0.0 : v);
}

struct Key {  // search.fitness_key: (0, energy) or (1, violations, std); smaller is fitter
  int cls;
  double a, b;
  bool operator<(const Key& o) const {
    if (cls != o.cls) return cls < o.cls;
    if (a != o.a) return a < o.a;
    return b < o.b;
  }
  bool operator<=(const Key& o) const { return !(o < *this); }
};

struct State {  // a genome and what scoring it produced (buffers reused between children)
  std::vector<i64> func, conn, outs;
  std::vector<uint8_t> active, dirty;
  std::vector<int32_t> dlist;  // the dirty gates, ascending
  std::vector<i64> tog, err;
  bool changed = false, skipped = false;
  i64 energy = 0, s1 = 0, viol = 0;  // viol: pairs with |error| > max_error
  std::vector<std::pair<int32_t, int32_t>> eall;  // (pair, error) changed vs the parent
  __int128 s2 = 0;
};

class Evaluator {
 public:
  Evaluator(py::array_t<u64, py::array::c_style> inputs, int table_words, py::array_t<i64> pairs,
            py::array_t<i64> exact, py::array_t<i64> h_ptr, py::array_t<i64> h_row,
            py::array_t<i64> h_val, int outputs, bool is_signed, i64 max_error,
            py::array_t<i64> func, py::array_t<i64> conn, py::array_t<i64> outs)
      : tw_(table_words), signed_(is_signed), outputs_(outputs), max_err_(max_error) {
    if (max_err_ >= 0) eall_.assign((size_t)tw_ * 64, 0);
    w_ = (int)inputs.shape(1);
    n_ = (int)func.size();
    auto copy = [](py::array_t<i64> a) { return std::vector<i64>(a.data(), a.data() + a.size()); };
    pairs_ = copy(pairs), exact_ = copy(exact), hptr_ = copy(h_ptr);
    hrow_.assign(h_row.data(), h_row.data() + h_row.size());  // int32: half the memory traffic
    hval_.assign(h_val.data(), h_val.data() + h_val.size());
    wptr_.assign(table_words + 1, 0);  // pairs are sorted: pairs of word w at wptr_[w]..
    for (i64 p : pairs_) wptr_[(p >> 6) + 1] += 1;
    for (int w = 0; w < table_words; ++w) wptr_[w + 1] += wptr_[w];
    size_t rows = (size_t)(N_IN + n_) * w_;
    values_.assign(rows, 0), scratch_.assign(rows, 0), best_.assign(rows, 0);
    std::memcpy(values_.data(), inputs.data(), sizeof(u64) * N_IN * w_);
    valid_.assign(n_, 0);
    parent_.func = copy(func), parent_.conn = copy(conn), parent_.outs = copy(outs);
    parent_.tog.assign(n_, 0), parent_.err.assign(outputs_, 0);
    parent_.active.assign(n_, 0);
    last_ = parent_;
    std::vector<uint8_t> all(n_, 1);
    score(last_, all, true, -1);
    keep();
    accept();
  }

  py::tuple try_child(const std::vector<std::pair<i64, i64>>& deltas, i64 limit) {
    return result(score_child(deltas, limit));
  }

  // search._generation, generation after generation, on Python's generator state `rng`
  // (getstate()'s 625 integers), until `budget` evaluations or `seconds` have passed.
  // Returns (rng state, evaluations, generations, improvements); an improvement is
  // (evaluations, energy, s1, s2, violations, fits, genome or None), with the genome
  // (func, conn, outs) only where it fits (the finalists).
  py::tuple run(std::vector<i64> rng, int lam, int mutations, double threshold, i64 evaluations,
                i64 budget, double seconds) {
    PyRandom r;
    for (int i = 0; i < 624; ++i) r.mt[i] = (uint32_t)rng[i];
    r.index = (int)rng[624];
    std_limit_ = threshold;
    auto start = std::chrono::steady_clock::now();
    i64 generations = 0;
    py::list improved;
    Key parent = key(parent_);
    while (evaluations < budget) {
      Key best{};
      bool any = false;
      i64 limit = parent.cls == 0 ? parent_.energy : -1;
      active_genes();
      for (int i = 0; i < lam; ++i) {
        mutate(r, mutations);
        const State& c = score_child(deltas_, limit);
        evaluations += 1;
        if (c.skipped) continue;
        Key k = key(c);
        if (!any || k <= best) {
          best = k, any = true;
          keep();
          if (k.cls == 0) limit = best_state_.energy;
        }
      }
      generations += 1;
      if (any && best <= parent) {
        accept();
        if (best < parent) improved.append(improvement(evaluations, best.cls == 0));
        parent = best;
      }
      if (std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() >= seconds)
        break;
    }
    std::vector<i64> state(r.mt, r.mt + 624);
    state.push_back(r.index);
    return py::make_tuple(state, evaluations, generations, improved);
  }

  void keep() {
    std::swap(scratch_, best_);
    std::swap(last_, best_state_);
  }

  void accept() {
    State& c = best_state_;
    for (int j : c.dlist) {
      std::memcpy(&values_[(size_t)(N_IN + j) * w_], &best_[(size_t)(N_IN + j) * w_], sizeof(u64) * w_);
      parent_.tog[j] = c.tog[j];
    }
    if (c.changed) parent_.err = c.err;
    for (auto& pe : c.eall) eall_[pe.first] = pe.second;
    parent_.viol = c.viol;
    parent_.func = c.func, parent_.conn = c.conn, parent_.outs = c.outs;
    parent_.active = c.active, valid_ = c.active;
    parent_.energy = c.energy, parent_.s1 = c.s1, parent_.s2 = c.s2;
  }

  py::tuple parent_score() { return result(parent_); }

  py::array_t<bool> active() {
    py::array_t<bool> out(n_);
    for (int j = 0; j < n_; ++j) out.mutable_data()[j] = parent_.active[j] != 0;
    return out;
  }

  py::array_t<i64> genome_func() { return py::array_t<i64>(n_, parent_.func.data()); }
  py::array_t<i64> genome_conn() {
    return py::array_t<i64>(std::vector<py::ssize_t>{n_, 3}, parent_.conn.data());
  }
  py::array_t<i64> genome_outs() { return py::array_t<i64>(N_OUT, parent_.outs.data()); }

  py::array_t<i64> table() {  // the parent's product at every operand pair
    py::array_t<i64> out(1 << 16);
    i64* o = out.mutable_data();
    for (int p = 0; p < (1 << 16); ++p) o[p] = product(parent_.outs, values_, nullptr, nullptr, p);
    return out;
  }

 private:
  const State& score_child(const std::vector<std::pair<i64, i64>>& deltas, i64 limit) {
    State& c = last_;
    c.func = parent_.func, c.conn = parent_.conn, c.outs = parent_.outs;
    mutated_.assign(n_, 0);
    for (auto& d : deltas) {
      i64 g = d.first;
      if (g >= (i64)FIELDS * n_) {
        c.outs[g - FIELDS * n_] = d.second;
        continue;
      }
      i64 j = g / FIELDS, f = g % FIELDS;
      mutated_[j] = 1;
      if (f == 0) c.func[j] = d.second;
      else c.conn[j * 3 + f - 1] = d.second;
    }
    score(c, mutated_, false, limit);
    return c;
  }

  Key key(const State& s) const {
    double sd = py_std(s.s1, s.s2, outputs_);
    if (s.viol == 0 && sd <= std_limit_) return Key{0, (double)s.energy, 0.0};
    return Key{1, (double)s.viol, sd};
  }

  void active_genes() {  // evaluator.active_genes of the parent, in its order
    genes_.clear();
    for (int j = 0; j < n_; ++j)
      if (parent_.active[j])
        for (int f = 0; f <= ARITY[parent_.func[j]]; ++f) genes_.push_back((i64)j * FIELDS + f);
    for (int k = 0; k < N_OUT; ++k) genes_.push_back((i64)FIELDS * n_ + k);
  }

  i64 gene_value(i64 g) const {
    if (g >= (i64)FIELDS * n_) return parent_.outs[g - FIELDS * n_];
    return g % FIELDS == 0 ? parent_.func[g / FIELDS] : parent_.conn[(g / FIELDS) * 3 + g % FIELDS - 1];
  }

  void mutate(PyRandom& r, int mutations) {  // search.mutate, draw for draw
    deltas_.clear();
    i64 extra = r.randrange(mutations);
    for (i64 k = 0; k <= extra; ++k) {
      i64 g = k == 0 ? genes_[r.randrange((i64)genes_.size())] : r.randrange((i64)FIELDS * n_ + N_OUT);
      i64 span = g >= (i64)FIELDS * n_ ? N_IN + n_ : g % FIELDS == 0 ? 11 : N_IN + g / FIELDS;
      i64 v;
      if (k == 0) {
        v = r.randrange(span - 1);
        v += v >= gene_value(g);
      } else {
        v = r.randrange(span);
      }
      deltas_.emplace_back(g, v);
    }
  }

  py::tuple improvement(i64 evaluations, bool fits) {
    py::object genome = py::none();
    if (fits) genome = py::make_tuple(genome_func(), genome_conn(), genome_outs());
    return py::make_tuple(evaluations, parent_.energy, parent_.s1, s2_of(parent_), parent_.viol,
                          fits, genome);
  }

  const u64* row(int i, const std::vector<uint8_t>* dirty) const {
    if (dirty && i >= N_IN && (*dirty)[i - N_IN]) return &scratch_[(size_t)i * w_];
    return &values_[(size_t)i * w_];
  }

  i64 product(const std::vector<i64>& outs, const std::vector<u64>& vals,
              const std::vector<uint8_t>* dirty, const u64* const* planes, i64 p) const {
    i64 v = 0;
    int word = (int)(p >> 6), bit = (int)(p & 63);
    for (int k = 0; k < N_OUT; ++k) {
      const u64* r = planes ? planes[k] : &vals[(size_t)outs[k] * w_];
      v |= (i64)((r[word] >> bit) & 1) << k;
    }
    if (signed_) v -= (v & 0x8000) << 1;
    return v;
  }

  i64 exact_of(i64 p) const {
    i64 a = p >> 8, b = p & 255;
    return signed_ ? (i64)(int8_t)a * (int8_t)b : a * b;
  }

  void find_active(State& c) {
    c.active.assign(n_, 0);
    stack_.clear();
    for (int k = 0; k < N_OUT; ++k)
      if (c.outs[k] >= N_IN) stack_.push_back((int32_t)(c.outs[k] - N_IN));
    while (!stack_.empty()) {
      int32_t j = stack_.back();
      stack_.pop_back();
      if (c.active[j]) continue;
      c.active[j] = 1;
      for (int q = 0; q < ARITY[c.func[j]]; ++q) {
        i64 i = c.conn[j * 3 + q];
        if (i >= N_IN && !c.active[i - N_IN]) stack_.push_back((int32_t)(i - N_IN));
      }
    }
  }

  void gate_words(const State& c, int j, int from, int to) {
    auto at = [&](i64 i) { return row((int)i, &c.dirty) + from; };
    const i64* k = &c.conn[(size_t)j * 3];
    gate((int)c.func[j], &scratch_[(size_t)(N_IN + j) * w_] + from, at(k[0]), at(k[1]), at(k[2]),
         to - from);
  }

  // limit >= 0: a child whose energy exceeds it cannot win, its error is not computed.
  // The dirty gates' stream words come first (the energy); their table words only for a
  // child that is not skipped (a skipped child is never kept).
  void score(State& c, const std::vector<uint8_t>& mutated, bool full, i64 limit) {
    find_active(c);
    c.dirty.assign(n_, 0);
    c.dlist.clear();
    c.eall.clear();
    c.tog = parent_.tog;
    load_.assign(n_, 0);
    for (int j = 0; j < n_; ++j) {
      if (!c.active[j]) continue;
      int ar = ARITY[c.func[j]];
      bool d = mutated[j] || !valid_[j];
      for (int q = 0; q < ar; ++q) {
        i64 i = c.conn[j * 3 + q];
        if (i >= N_IN) {
          load_[i - N_IN] += 1;
          d = d || c.dirty[i - N_IN];
        }
      }
      if (!d) continue;
      c.dirty[j] = 1;
      c.dlist.push_back(j);
      gate_words(c, j, tw_, w_);
      c.tog[j] = toggles(&scratch_[(size_t)(N_IN + j) * w_] + tw_, w_ - tw_);
    }
    c.changed = full;
    for (int k = 0; k < N_OUT; ++k) {
      i64 o = c.outs[k];
      if (o >= N_IN) load_[o - N_IN] += 1;
      if (o != parent_.outs[k] || (o >= N_IN && c.dirty[o - N_IN])) c.changed = true;
    }
    c.energy = 0;
    for (int j = 0; j < n_; ++j)
      if (c.active[j]) c.energy += load_[j] * c.tog[j];
    c.skipped = limit >= 0 && c.energy > limit;
    c.viol = parent_.viol;
    if (c.skipped) {
      c.s1 = parent_.s1, c.s2 = parent_.s2;
      c.changed = false;
      return;
    }
    for (int j : c.dlist) gate_words(c, j, 0, tw_);
    if (!c.changed) {
      c.s1 = parent_.s1, c.s2 = parent_.s2;
      return;
    }
    errors(c, full);
  }

  // Only pairs in words where a product bit changed are looked at again; a pair's error
  // changes by the weighted difference of its changed product bits.
  void errors(State& c, bool full) {
    const u64 *cp[N_OUT], *pp[N_OUT];
    int ch[N_OUT], nch = 0;
    i64 wt[N_OUT];
    for (int k = 0; k < N_OUT; ++k) {
      cp[k] = row((int)c.outs[k], &c.dirty);
      pp[k] = &values_[(size_t)parent_.outs[k] * w_];
      if (full || cp[k] != pp[k]) wt[nch] = (signed_ && k == 15) ? -(i64)1 << 15 : (i64)1 << k, ch[nch++] = k;
    }
    c.err = parent_.err;
    u64 nw[N_OUT], ow[N_OUT];
    i64 ww[N_OUT];
    for (int w = 0; w < tw_; ++w) {
      if (wptr_[w] == wptr_[w + 1] && max_err_ < 0) continue;
      u64 m = full ? ~0ULL : 0;
      int nd = 0;  // the planes that differ in this word
      for (int q = 0; q < nch; ++q) {
        u64 x = cp[ch[q]][w], y = pp[ch[q]][w];
        if (x == y && !full) continue;
        m |= x ^ y, nw[nd] = x, ow[nd] = full ? 0 : y, ww[nd++] = wt[q];
      }
      if (!m) continue;
      auto delta = [&](int bit) {
        i64 de = 0;
        for (int q = 0; q < nd; ++q) de += ((i64)((nw[q] >> bit) & 1) - (i64)((ow[q] >> bit) & 1)) * ww[q];
        return de;
      };
      for (u64 mm = max_err_ >= 0 ? m : 0; mm; mm &= mm - 1) {  // the worst-case bound
        int bit = __builtin_ctzll(mm);
        i64 p = (i64)w * 64 + bit, old = eall_[p];
        i64 e = full ? delta(bit) - exact_of(p) : old + delta(bit);
        if (e == old) continue;
        c.viol += (int)(e > max_err_ || -e > max_err_) - (int)(old > max_err_ || -old > max_err_);
        c.eall.emplace_back((int32_t)p, (int32_t)e);
      }
      for (i64 u = wptr_[w]; u < wptr_[w + 1]; ++u) {
        int bit = (int)(pairs_[u] & 63);
        if (!((m >> bit) & 1)) continue;
        i64 de = full ? delta(bit) - exact_[u] : delta(bit);
        if (!de) continue;
        const int32_t *r = &hrow_[hptr_[u]], *v = &hval_[hptr_[u]];
        for (i64 q = 0, nq = hptr_[u + 1] - hptr_[u]; q < nq; ++q) c.err[r[q]] += (i64)v[q] * de;
      }
    }
    c.s1 = 0, c.s2 = 0;
    for (i64 v : c.err) c.s1 += v, c.s2 += (__int128)v * v;
  }

  static py::int_ s2_of(const State& s) {  // s2 >= 0, beyond 64 bits
    u64 lo = (u64)s.s2, hi = (u64)(s.s2 >> 64);
    py::int_ s2 = py::reinterpret_steal<py::int_>(PyLong_FromUnsignedLongLong(hi));
    s2 = py::reinterpret_steal<py::int_>(PyNumber_Lshift(s2.ptr(), py::int_(64).ptr()));
    return py::reinterpret_steal<py::int_>(PyNumber_Or(s2.ptr(), py::int_(lo).ptr()));
  }

  py::tuple result(const State& s) const {
    return py::make_tuple(s.energy, s.s1, s2_of(s), s.skipped, s.viol);
  }

  int w_, n_, tw_;
  bool signed_;
  int outputs_;
  i64 max_err_;
  std::vector<int32_t> eall_;  // the parent's error at every pair (with a bound only)
  std::vector<i64> pairs_, exact_, hptr_, wptr_;
  std::vector<int32_t> hrow_, hval_, stack_;
  std::vector<u64> values_, scratch_, best_;
  std::vector<uint8_t> valid_, mutated_;
  std::vector<i64> load_, genes_;
  std::vector<std::pair<i64, i64>> deltas_;
  double std_limit_ = 0;  // problem.fits' threshold on the std
  State parent_, last_, best_state_;
};

// py_std with Python integers (for the tests: it must equal problem.Problem.std).
static double std_of(i64 s1, py::int_ s2, i64 outputs) {
  py::int_ mask((u64)~0ULL);
  u64 lo = py::int_(s2 & mask).cast<u64>(), hi = py::int_((s2 >> py::int_(64)) & mask).cast<u64>();
  return py_std(s1, ((__int128)hi << 64) | lo, outputs);
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("std_of", &std_of);
  py::class_<Evaluator>(m, "Evaluator")
      .def(py::init<py::array_t<u64, py::array::c_style>, int, py::array_t<i64>, py::array_t<i64>,
                    py::array_t<i64>, py::array_t<i64>, py::array_t<i64>, int, bool, i64,
                    py::array_t<i64>, py::array_t<i64>, py::array_t<i64>>())
      .def("try_child", &Evaluator::try_child)
      .def("run", &Evaluator::run)
      .def("keep", &Evaluator::keep)
      .def("accept", &Evaluator::accept)
      .def("parent_score", &Evaluator::parent_score)
      .def("active", &Evaluator::active)
      .def("genome_func", &Evaluator::genome_func)
      .def("genome_conn", &Evaluator::genome_conn)
      .def("genome_outs", &Evaluator::genome_outs)
      .def("table", &Evaluator::table);
}
