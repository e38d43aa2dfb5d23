//! Throughput of the spool-file parser and the SMTP reply parser, in bytes per second.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use cssmtp_batch::{
    DataRules, Limits, TextHasher, parse_bytes, render_lines, render_lines_checked,
};
use cssmtp_bench::{reply_stream, spool_file};
use cssmtp_wire::ReplyParser;

fn spool_parser(c: &mut Criterion) {
    let mut group = c.benchmark_group("spool parser");
    for (name, mails, rcpts, text) in [
        ("4 KiB mails", 100, 1, 4096),
        ("100 KiB mails", 10, 1, 100 * 1024),
        ("4 KiB mails, 50 rcpts", 100, 50, 4096),
    ] {
        let file = spool_file(mails, rcpts, text);
        group.throughput(Throughput::Bytes(file.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                let (parsed, summary) = parse_bytes(&file, Limits::default());
                assert_eq!(parsed.len(), mails);
                assert!(summary.errors.is_empty());
            });
        });
    }
    let file = spool_file(100, 1, 4096);
    group.throughput(Throughput::Bytes(file.len() as u64));
    group.bench_function("render text for the wire", |b| {
        let mut out = Vec::with_capacity(file.len() * 2);
        b.iter(|| {
            out.clear();
            render_lines(&file, DataRules::default(), true, &mut out);
        });
    });
    // The same lines without the "." that ends each mail (a lone "." is refused).
    let text: Vec<u8> = file
        .split(|&b| b == b'\n')
        .filter(|line| *line != b".")
        .flat_map(|line| line.iter().copied().chain([b'\n']))
        .collect();
    group.throughput(Throughput::Bytes(text.len() as u64));
    group.bench_function("render text for the wire, checked and hashed", |b| {
        let mut out = Vec::with_capacity(text.len() * 2);
        b.iter(|| {
            out.clear();
            let rendered = render_lines_checked(
                &text,
                DataRules::default(),
                true,
                &mut out,
                &mut TextHasher::new(),
            );
            assert!(rendered.is_ok());
        });
    });
    group.finish();
}

fn reply_parser(c: &mut Criterion) {
    let mut group = c.benchmark_group("reply parser");
    let stream = reply_stream(1000, 3);
    group.throughput(Throughput::Bytes(stream.len() as u64));
    group.bench_function("pipelined replies", |b| {
        b.iter(|| {
            let mut parser = ReplyParser::new();
            let mut rest = stream.as_slice();
            let mut count = 0;
            while let Ok(Some((_, used))) = parser.parse(rest) {
                count += 1;
                rest = rest.get(used..).unwrap_or_default();
            }
            assert_eq!(count, 6000);
        });
    });
    group.finish();
}

criterion_group!(benches, spool_parser, reply_parser);
criterion_main!(benches);
