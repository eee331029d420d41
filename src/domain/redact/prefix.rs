//! The tail of a stream that could still grow into a secret. A [`StreamRedactor`] holds back
//! exactly the longest tail of its undecided input that is a *proper* prefix of some secret (one
//! that a secret goes on beyond) and releases everything before it at once: an occurrence
//! completed by later input must start in that tail, and no other bytes can become part of one.
//! So a line, or the part of a partial line, that does not end in the beginning of a secret is
//! never held, however long the secrets are and whether or not one contains a newline.
//!
//! [`Prefixes`] is a trie of the secrets with failure links (the Aho-Corasick construction); one
//! pass over the last (longest secret − 1) bytes finds the tail. The `aho-corasick` crate finds
//! the occurrences, but does not tell how deep into a pattern its scan ended, which is what this
//! needs.
//!
//! [`StreamRedactor`]: super::StreamRedactor

/// A trie of the secrets, nodes in breadth-first order (node 0 is the empty prefix), with
/// per-node answers precomputed; about 13 bytes per node.
pub(super) struct Prefixes {
    /// The byte on the edge into each node.
    label: Vec<u8>,
    /// The children of node `n` are the nodes `first_child[n]..first_child[n + 1]`, sorted by
    /// label; one more entry than nodes.
    first_child: Vec<u32>,
    /// The node of the longest proper suffix of each node's prefix that is itself a node.
    fail: Vec<u32>,
    /// For each node, the length of the longest suffix of its prefix (itself included) that is a
    /// proper prefix of a secret: the depth of the first node with children on its failure chain.
    hold: Vec<u32>,
    /// The longest secret's length.
    max_len: usize,
}

impl Prefixes {
    /// Builds the trie of `secrets` (none empty). `None` if the trie would not fit 32-bit node
    /// numbers (more than 4 GiB of secrets).
    pub(super) fn new(secrets: &[&[u8]]) -> Option<Prefixes> {
        let total: usize = secrets.iter().map(|s| s.len()).sum();
        u32::try_from(total.checked_add(1)?).ok()?;
        let mut sorted = secrets.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        // Node n stands for the prefix of length depth[n] shared by sorted[lo..hi] (`range`):
        // its children are that range grouped by the byte after the prefix. Secrets equal to the
        // prefix sort first in the range and have no byte there.
        let mut range: Vec<(u32, u32)> = vec![(0, sorted.len() as u32)];
        let mut depth: Vec<u32> = vec![0];
        let mut label = vec![0];
        let mut first_child = Vec::with_capacity(total + 2);
        let mut node = 0;
        while node < range.len() {
            let d = depth[node] as usize;
            let (mut lo, hi) = (range[node].0 as usize, range[node].1 as usize);
            first_child.push(range.len() as u32);
            while lo < hi && sorted[lo].len() == d {
                lo += 1;
            }
            while lo < hi {
                let byte = sorted[lo][d];
                let end = lo + sorted[lo..hi].partition_point(|s| s[d] == byte);
                range.push((lo as u32, end as u32));
                depth.push(d as u32 + 1);
                label.push(byte);
                lo = end;
            }
            node += 1;
        }
        first_child.push(range.len() as u32);
        let nodes = range.len();
        drop(range);
        debug_assert_eq!(depth.len(), nodes);
        let mut trie = Prefixes {
            label,
            first_child,
            fail: vec![0; nodes],
            hold: vec![0; nodes],
            max_len: sorted.iter().map(|s| s.len()).max().unwrap_or(0),
        };
        // Breadth-first: a node's failure link and its own answer only need shallower nodes.
        for (node, &depth) in depth.iter().enumerate() {
            let children = trie.children(node as u32);
            trie.hold[node] = if children.is_empty() {
                trie.hold[trie.fail[node] as usize]
            } else {
                depth
            };
            for child in children {
                trie.fail[child] = if node == 0 {
                    0
                } else {
                    trie.next(trie.fail[node], trie.label[child])
                };
            }
        }
        Some(trie)
    }

    /// The length of the longest tail of `buf` that is a proper prefix of a secret.
    pub(super) fn held(&self, buf: &[u8]) -> usize {
        let window = &buf[buf.len() - buf.len().min(self.max_len.saturating_sub(1))..];
        let end = window.iter().fold(0, |state, &byte| self.next(state, byte));
        self.hold[end as usize] as usize
    }

    fn children(&self, node: u32) -> std::ops::Range<usize> {
        self.first_child[node as usize] as usize..self.first_child[node as usize + 1] as usize
    }

    /// The node reached from `state` by `byte`: the longest suffix of (its prefix + `byte`) that
    /// is a node.
    fn next(&self, mut state: u32, byte: u8) -> u32 {
        loop {
            let children = self.children(state);
            if let Ok(at) = self.label[children.clone()].binary_search(&byte) {
                return (children.start + at) as u32;
            }
            if state == 0 {
                return 0;
            }
            state = self.fail[state as usize];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The longest tail of `buf` that is a proper prefix of one of `secrets`, by brute force.
    fn oracle(secrets: &[&[u8]], buf: &[u8]) -> usize {
        (0..=buf.len())
            .rev()
            .find(|&k| {
                let tail = &buf[buf.len() - k..];
                k == 0 || secrets.iter().any(|s| s.len() > k && s.starts_with(tail))
            })
            .unwrap_or(0)
    }

    #[track_caller]
    fn check(secrets: &[&str], buf: &str, want: usize) {
        let secrets: Vec<&[u8]> = secrets.iter().map(|s| s.as_bytes()).collect();
        let trie = Prefixes::new(&secrets).expect("small set");
        assert_eq!(trie.held(buf.as_bytes()), want, "{buf:?}");
        assert_eq!(oracle(&secrets, buf.as_bytes()), want, "oracle, {buf:?}");
    }

    #[test]
    fn the_held_tail_is_the_longest_proper_secret_prefix() {
        check(&["secret"], "hello sec", 3);
        check(&["secret"], "hello\n", 0);
        check(&["secret"], "hello secret", 0);
        check(&["secret"], "secret!", 0);
        check(&["secret"], "secrets", 1);
        check(&["secret"], "ssssss", 1);
        check(&["secret", "sesame"], "x ses", 3);
        check(&["secret", "sesame"], "x sesx", 0);
        // A complete secret that a longer one continues is still held.
        check(&["abc", "abcdef"], "xabc", 3);
        check(&["abc", "abcdef"], "xab", 2);
        // A failure link carries the scan from `aab` over to `ab`, so `aby` is found.
        check(&["aabx", "abyz"], "aab", 3);
        check(&["aabx", "abyz"], "aaby", 3);
        check(&["aabx", "abyz"], "aabyx", 0);
        check(&["aaab"], "aaaaaaa", 3);
        // A secret with a newline holds across it; one ending in a newline does not hold a line.
        check(&["ab\ncd"], "xx ab\n", 3);
        check(&["token\n"], "a line\n", 0);
        check(&["token\n"], "a tok", 3);
        check(&["\nstart"], "a line\n", 1);
        check(&["é日本"], "x é日", 5);
    }

    #[test]
    fn agrees_with_brute_force_on_every_tail_of_a_tangled_text() {
        let secrets: Vec<&[u8]> = vec![b"abab", b"abba", b"ba", b"bbb", b"aab\nb", b"b\n"];
        let trie = Prefixes::new(&secrets).expect("small set");
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut text = Vec::new();
        for _ in 0..2000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            text.push(b"ab\n"[(seed % 3) as usize]);
            for from in text.len().saturating_sub(8)..text.len() {
                let buf = &text[from..];
                assert_eq!(
                    trie.held(buf),
                    oracle(&secrets, buf),
                    "{:?}",
                    String::from_utf8_lossy(buf)
                );
            }
        }
    }
}
