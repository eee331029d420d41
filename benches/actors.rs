//! The cost of the introspection layer per message: 10,000 messages cast to one actor and a
//! final call that waits for them, with a bare ractor actor and with the same behaviour run by
//! `Instrumented` (counters, timing, trace ring) through `Addr::cast`. Run:
//! `cargo bench --bench actors`.

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use orchestrator::actors::runtime::{self, Addr, Behaviour, Message};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

const MESSAGES: u64 = 10_000;

enum Msg {
    Add(u64),
    Get(RpcReplyPort<u64>),
}

impl Message for Msg {
    fn kind(&self) -> &'static str {
        match self {
            Msg::Add(_) => "Add",
            Msg::Get(_) => "Get",
        }
    }
}

struct Bare;

impl Actor for Bare {
    type Msg = Msg;
    type State = u64;
    type Arguments = ();
    async fn pre_start(&self, _me: ActorRef<Msg>, _: ()) -> Result<u64, ActorProcessingErr> {
        Ok(0)
    }
    async fn handle(
        &self,
        _me: ActorRef<Msg>,
        msg: Msg,
        sum: &mut u64,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            Msg::Add(n) => *sum += n,
            Msg::Get(reply) => {
                let _ = reply.send(*sum);
            }
        }
        Ok(())
    }
}

struct Counted;

impl Behaviour for Counted {
    type Msg = Msg;
    type State = u64;
    type Args = ();
    const TYPE: &'static str = "BenchActor";
    async fn pre_start(&self, _me: Addr<Msg>, _: ()) -> Result<u64, ActorProcessingErr> {
        Ok(0)
    }
    async fn handle(
        &self,
        _me: &Addr<Msg>,
        msg: Msg,
        sum: &mut u64,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            Msg::Add(n) => *sum += n,
            Msg::Get(reply) => {
                let _ = reply.send(*sum);
            }
        }
        Ok(())
    }
    fn inspect(&self, sum: &u64) -> serde_json::Value {
        serde_json::json!({ "sum": sum })
    }
}

fn per_message(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (bare, _) = rt
        .block_on(Actor::spawn(Some("bench-bare".into()), Bare, ()))
        .expect("bare actor");
    let counted = rt
        .block_on(runtime::Registry::new().spawn("bench-counted".into(), Counted, (), None))
        .expect("instrumented actor");
    let mut g = c.benchmark_group("actor_messages");
    g.throughput(Throughput::Elements(MESSAGES));
    g.bench_function("bare_ractor", |b| {
        b.to_async(&rt).iter(|| async {
            for i in 0..MESSAGES {
                let _ = bare.cast(Msg::Add(i));
            }
            bare.call(Msg::Get, Some(Duration::from_secs(10)))
                .await
                .expect("call")
        })
    });
    g.bench_function("instrumented", |b| {
        b.to_async(&rt).iter(|| async {
            for i in 0..MESSAGES {
                let _ = counted.cast(Msg::Add(i));
            }
            counted
                .call(Msg::Get, Duration::from_secs(10))
                .await
                .expect("call")
        })
    });
    g.finish();
}

criterion_group!(benches, per_message);
criterion_main!(benches);
