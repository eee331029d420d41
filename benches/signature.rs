//! Benchmarks of webhook signature verification, the hot path of every webhook request: each
//! scheme on a 1 KiB body, once with a single key and once with three keys of which the last
//! matches (the worst case of a rotation, since every key is always tried anyway).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use orchestrator::domain::signature::*;

const NOW: i64 = 1_700_000_000;

fn verify_each_scheme(c: &mut Criterion) {
    let body: Vec<u8> = br#"{"type":"event_callback","event":{"text":""#
        .iter()
        .copied()
        .chain(std::iter::repeat(b'x'))
        .take(1022)
        .chain(*br#""}"#)
        .collect();
    assert_eq!(body.len(), 1024);

    let mut group = c.benchmark_group("verify");
    for scheme in Scheme::ALL {
        let (current, old): (&[u8], [&[u8]; 2]) = match scheme {
            Scheme::StandardWebhooks => (
                b"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                [
                    b"whsec_c2VjcmV0LW9mLWFub3RoZXItZW5kcG9pbnQ=",
                    b"whsec_b2xkZXItc2VjcmV0LW9mLXRoaXMtZW5kcG9p",
                ],
            ),
            _ => (
                b"current-secret-0123456789abcdef",
                [
                    b"old-secret-0123456789abcdef",
                    b"older-secret-0123456789abcdef",
                ],
            ),
        };
        let headers = sign(scheme, None, current, &body, NOW, "msg_bench");
        let params = VerifyParams::new(scheme, NOW);
        let one = [Key {
            name: "current",
            secret: current,
        }];
        let three = [
            Key {
                name: "older",
                secret: old[1],
            },
            Key {
                name: "old",
                secret: old[0],
            },
            Key {
                name: "current",
                secret: current,
            },
        ];
        for (label, keys, index) in [
            ("1-key", &one[..], 0),
            ("3-keys-last-matches", &three[..], 2),
        ] {
            let verified = verify(&params, &headers, &body, keys);
            assert_eq!(verified.map(|v| v.key_index), Ok(index), "{scheme} {label}");
            group.bench_function(format!("{}/{label}", scheme.name()), |b| {
                b.iter(|| {
                    verify(
                        black_box(&params),
                        black_box(&headers),
                        black_box(&body),
                        black_box(keys),
                    )
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, verify_each_scheme);
criterion_main!(benches);
