//! A small, seedable random number generator (xoshiro256++ seeded through SplitMix64,
//! Blackman and Vigna, 2018).
//!
//! Our own rather than `rand`'s so that the synthetic set, augmentation, shuffling and folds
//! stay bit-identical across dependency upgrades: a seed in a `config.json` must keep meaning
//! the same data. Parallel work seeds one generator per item with [`Rng::for_item`], so the
//! result does not depend on how rayon splits the work.

/// xoshiro256++: fast, 256 bits of state, passes BigCrush.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rng {
    state: [u64; 4],
}

/// SplitMix64 step: turns any 64-bit value into a well-mixed one.
fn splitmix64(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    /// A generator seeded from one number.
    pub fn new(seed: u64) -> Self {
        let mut x = seed;
        let state = [
            splitmix64(&mut x),
            splitmix64(&mut x),
            splitmix64(&mut x),
            splitmix64(&mut x),
        ];
        Self { state }
    }

    /// A generator for item `index` of stream `stream` under `seed`; independent of the order
    /// in which items are visited.
    pub fn for_item(seed: u64, stream: u64, index: u64) -> Self {
        let mut x = seed ^ 0x5DEE_CE66_D1CE_4E5B;
        let a = splitmix64(&mut x);
        let mut y = a ^ stream.wrapping_mul(0xA076_1D64_78BD_642F);
        let b = splitmix64(&mut y);
        let mut z = b ^ index.wrapping_mul(0xE703_7ED1_A0B4_28DB);
        Self::new(splitmix64(&mut z))
    }

    /// The raw generator state, to checkpoint and restore a stream exactly.
    pub fn state(&self) -> [u64; 4] {
        self.state
    }

    /// A generator continuing from a state returned by [`Rng::state`].
    pub fn from_state(state: [u64; 4]) -> Self {
        // The all-zero state is the one fixed point of xoshiro; never hand it out.
        if state == [0; 4] {
            Self::new(0)
        } else {
            Self { state }
        }
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.state;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in `[0, 1)`.
    pub fn f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 * (1.0 / (1u64 << 24) as f32)
    }

    /// Uniform in `[lo, hi)`.
    pub fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.f32()
    }

    /// Uniform integer in `0..n` (`n > 0`), without modulo bias worth mentioning for our `n`.
    pub fn below(&mut self, n: usize) -> usize {
        debug_assert!(n > 0, "below(0) has no value to return");
        (((self.next_u64() >> 32) * n as u64) >> 32) as usize
    }

    /// `true` with probability `p`.
    pub fn chance(&mut self, p: f32) -> bool {
        self.f32() < p
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f32 {
        let u1 = (self.f32() + 1e-7).min(1.0);
        let u2 = self.f32();
        (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
    }

    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_and_items_differ() {
        let a: Vec<u64> = (0..4).map(|_| Rng::new(7).next_u64()).collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        let x = Rng::for_item(1, 0, 0).next_u64();
        let y = Rng::for_item(1, 0, 1).next_u64();
        let z = Rng::for_item(1, 1, 0).next_u64();
        assert!(x != y && x != z && y != z);
    }

    #[test]
    fn uniform_and_below_stay_in_range() {
        let mut rng = Rng::new(3);
        for _ in 0..10_000 {
            let f = rng.f32();
            assert!((0.0..1.0).contains(&f));
            assert!(rng.below(7) < 7);
        }
    }

    #[test]
    fn state_round_trips() {
        let mut rng = Rng::new(11);
        rng.next_u64();
        let mut copy = Rng::from_state(rng.state());
        assert_eq!(rng.next_u64(), copy.next_u64());
    }
}
