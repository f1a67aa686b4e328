//! Composition alone, per message: render the example edition for one subscriber and build
//! the exact bytes that would go on the wire (no network, no journal). Target: at least
//! 20,000 messages per second on one core.

// The benchmark times itself; a fixture string built in a loop is fine here; a Unix time
// reads best in seconds.
#![allow(
    clippy::disallowed_methods,
    clippy::format_collect,
    clippy::duration_suboptimal_units
)]

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use newsletter::clock::Clock;
use newsletter::input::address::{DisplayName, EmailAddress};
use newsletter::input::subscribers::{Status, Subscriber};
use newsletter::project::{EditionRequest, Project, outgoing};

fn subscribers(n: usize) -> Vec<Subscriber> {
    (0..n)
        .map(|i| Subscriber {
            email: EmailAddress::parse(&format!("reader{i}@example.org")).expect("address"),
            name: (i % 3 != 0).then(|| DisplayName::parse(&format!("Reader {i}")).expect("name")),
            status: Status::Subscribed,
            since: None,
            tags: Vec::new(),
        })
        .collect()
}

fn compose(c: &mut Criterion) {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("example/newsletter.toml");
    let clock = Clock::at(UNIX_EPOCH + Duration::from_secs(1_795_770_000));
    // No state database: the edition is the example's selected articles.
    let project =
        Project::open(&config, &EditionRequest::default(), clock, None).expect("example project");
    let edition = project
        .edition
        .as_ref()
        .expect("the example has selected articles");
    let composer = project.composer(edition);
    let mailer = project.mailer(edition);
    let readers = subscribers(1000);
    let size = outgoing(&composer, &mailer, &readers[0])
        .expect("message")
        .bytes
        .len();
    eprintln!(
        "example edition: {} articles, {size} bytes per message",
        edition.articles.len()
    );

    let mut group = c.benchmark_group("compose");
    group.throughput(Throughput::Elements(1));
    let mut i = 0;
    group.bench_function("render + MIME message, per recipient", |b| {
        b.iter(|| {
            let reader = &readers[i % readers.len()];
            i += 1;
            black_box(
                outgoing(&composer, &mailer, reader)
                    .expect("message")
                    .bytes
                    .len(),
            )
        });
    });
    group.finish();
}

/// Loading: parsing and checking a 100,000-subscriber list. Target: under 0.5 s.
fn load_subscribers(c: &mut Criterion) {
    let text: String = (0..100_000)
        .map(|i| {
            let name = if i % 3 == 0 { String::new() } else { format!("name = \"Reader {i}\"\n") };
            format!("[[subscriber]]\nemail = \"reader{i}@example.org\"\n{name}status = \"subscribed\"\nsince = 2025-01-01\n\n")
        })
        .collect();
    let mut group = c.benchmark_group("subscribers");
    group.sample_size(10);
    group.bench_function("parse and check 100,000 entries", |b| {
        b.iter(|| {
            let list = newsletter::input::subscribers::parse(&text, Path::new("subscribers.toml"))
                .expect("valid list");
            black_box(list.entries.len())
        });
    });
    group.finish();
}

criterion_group!(benches, compose, load_subscribers);
criterion_main!(benches);
