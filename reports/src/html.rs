//! Self-contained HTML timeline of one failing seed: one lane per node showing its role over
//! time, fault windows, markers (elections, truncations, checkpoints, DDL, ...) and the
//! violations in red; with the client history, one lane per client below, each operation a bar
//! from invocation to completion coloured by outcome, the ones a violation names outlined.
//! Hover shows a marker's details, click pins them, drag zooms.
//!
//! One file with inline CSS, SVG and JS: it is attached to CI runs and mailed around, so it
//! must open anywhere without a network (a Content-Security-Policy forbids every fetch). The SVG
//! is drawn here, so the page shows the whole run even without JS; the script only re-lays it
//! out when zooming. Everything from the trace is HTML-escaped: details are engine output.

use std::fmt::Write as _;

use crate::text::secs_ms;
use crate::timeline::{Role, Timeline, ACTIVITY_BUCKETS, CLUSTER_LANE};
use crate::{ClientOp, OpOutcome, SeedReport, TraceEvent};

/// The exact fill of violation markers; `scripts/check-timeline.sh` counts pixels of it, so
/// nothing else on the page may use it at full opacity.
pub const VIOLATION_RGB: (u8, u8, u8) = (0xe8, 0x00, 0x1c);
/// Role fills, also counted by the screenshot check.
pub const ROLE_RGB: [(Role, (u8, u8, u8)); 6] = [
    (Role::Leader, (0x2f, 0x9e, 0x44)),
    (Role::Follower, (0x74, 0xc0, 0xfc)),
    (Role::Candidate, (0xfc, 0xc4, 0x19)),
    (Role::Up, (0xc5, 0xf6, 0xfa)),
    (Role::Down, (0xce, 0xd4, 0xda)),
    (Role::Aborted, (0x86, 0x2e, 0x9c)),
];

// Geometry, in SVG user units (the SVG scales to the window width).
const VIEW_W: u64 = 1360;
const PLOT_X0: u64 = 96;
const PLOT_W: u64 = 1244;
const AXIS_H: u64 = 26;
const FAULT_ROW_H: u64 = 13;
const LANE_H: u64 = 40;
const CLUSTER_H: u64 = 30;
const BAR_Y: u64 = 5;
const BAR_H: u64 = 18;
const MARK_Y: u64 = 14;
const ACT_BASE: u64 = 37;
const ACT_H: u64 = 11;
const OP_LANE_H: u64 = 16;
const OP_BAR_Y: u64 = 4;
const OP_BAR_H: u64 = 9;
/// The line an unknown outcome leaves open to the run's end, in the bar's middle.
const OP_TAIL_Y: u64 = 7;
const OP_TAIL_H: u64 = 3;

/// Marker shapes by trace kind; unknown kinds get a grey dot.
const SHAPES: &[(&str, &str)] = &[
    ("leader", "M0,-7L6,0L0,7L-6,0Z"),
    ("truncate", "M-6,-5L6,-5L0,6Z"),
    ("vote", "M-3,0a3,3 0 1,0 6,0a3,3 0 1,0 -6,0"),
    ("abort", "M-6,-6L6,-6L6,6L-6,6Z"),
    ("crash", "M-6,-6L6,-6L6,6L-6,6Z"),
    ("straggler", "M-4,0a4,4 0 1,0 8,0a4,4 0 1,0 -8,0"),
    ("checkpoint", "M-5,0a5,5 0 1,0 10,0a5,5 0 1,0 -10,0"),
    ("pickup", "M0,-6L6,5L-6,5Z"),
    ("rotate", "M-5,-5L5,-5L5,5L-5,5Z"),
    ("ddl", "M-5,-5L5,-5L5,5L-5,5Z"),
    ("step-up", "M0,-6L6,5L-6,5Z"),
    ("drop", "M-6,-5L6,-5L0,6Z"),
    ("step-down", "M-6,-5L6,-5L0,6Z"),
    ("leader-step-down", "M-6,-5L6,-5L0,6Z"),
    ("keystore", "M-5,-5L5,-5L5,5L-5,5Z"),
    ("drop-busy", "M0,-6L6,5L-6,5Z"),
    ("warn", "M0,-6L6,5L-6,5Z"),
    ("phase", "M-1,-9L1,-9L1,9L-1,9Z"),
];
const OTHER_SHAPE: &str = "M-4,0a4,4 0 1,0 8,0a4,4 0 1,0 -8,0";
const VIOLATION_SHAPE: &str = "M-6,-6H6V6H-6Z";

/// Renders the timeline of `seed` (of `scenario`) from its full trace.
pub fn render(scenario: &str, seed: &SeedReport, trace: &[TraceEvent]) -> String {
    render_timeline(scenario, seed, &Timeline::build(seed, trace))
}

/// Renders the timeline with the seed's client history in client lanes.
pub fn render_with_ops(
    scenario: &str,
    seed: &SeedReport,
    trace: &[TraceEvent],
    ops: &[ClientOp],
) -> String {
    render_timeline(
        scenario,
        seed,
        &Timeline::build(seed, trace).with_client_ops(ops),
    )
}

/// Renders an already built timeline (the CLI builds one per seed for both renderers).
pub fn render_timeline(scenario: &str, seed: &SeedReport, t: &Timeline) -> String {
    let mut out = String::with_capacity(64 * 1024);
    let title = format!("faultline: {} seed {}", esc(scenario), seed.seed);
    let status = if seed.failed() { "FAILED" } else { "passed" };
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; \
         style-src 'unsafe-inline'; script-src 'unsafe-inline'\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title}</title>\n<style>{CSS}</style></head>\n<body>\n"
    );
    let _ = writeln!(
        out,
        "<header><h1>{title} <span class=\"st {status}\">{status}</span></h1>\n\
         <p class=\"sum\">trace <code>{}</code> · {} events · simulated {} · {} ops acked · \
         {} violation(s) · replay: <code>{}</code></p>",
        esc(&seed.trace_hash),
        seed.events,
        secs_ms(seed.sim_ms),
        seed.ops_acked,
        seed.violations.len(),
        esc(&seed.replay)
    );
    legend(&mut out, t);
    out.push_str(
        "<div class=\"ctl\"><button id=\"zin\" title=\"zoom in (+)\">+</button>\
         <button id=\"zout\" title=\"zoom out (-)\">&minus;</button>\
         <button id=\"pl\" title=\"pan left (&larr;)\">&larr;</button>\
         <button id=\"pr\" title=\"pan right (&rarr;)\">&rarr;</button>\
         <button id=\"zreset\" title=\"whole run (0)\">whole run</button>\
         <span id=\"range\"></span> <span class=\"hint\">drag across the chart to zoom, \
         ctrl+wheel zooms, double-click resets; hover or click a marker for details</span></div>\n",
    );
    out.push_str("</header>\n");
    chart(&mut out, t);
    out.push_str(
        "<div id=\"details\" class=\"details\">Click a marker, segment or fault for its \
         details.</div>\n<div id=\"tip\" class=\"tip\" hidden></div>\n",
    );
    violations_table(&mut out, seed);
    if t.thinned > 0 {
        let _ = writeln!(
            out,
            "<p class=\"note\">{} markers were merged into nearby markers of the same kind to \
             keep the page light; hover a merged marker for its count.</p>",
            t.thinned
        );
    }
    if t.ops_merged > 0 {
        let _ = writeln!(
            out,
            "<p class=\"note\">{} of {} client operations were merged into nearby operations of \
             the same client and outcome to keep the page light; hover a merged bar for its \
             count. The Perfetto export has every operation.</p>",
            t.ops_merged,
            t.ops.len()
        );
    }
    if !seed.notes.is_empty() || !seed.windows.is_empty() {
        out.push_str("<h2>Notes</h2><ul class=\"notes\">");
        for n in &seed.notes {
            let _ = write!(out, "<li>{}</li>", esc(n));
        }
        if !seed.windows.is_empty() {
            let _ = write!(
                out,
                "<li>race windows entered: {}</li>",
                esc(&seed.windows.join(", "))
            );
        }
        out.push_str("</ul>\n");
    }
    out.push_str("<noscript><p class=\"note\">Zoom and details need JavaScript; the chart above is complete without it.</p></noscript>\n");
    let _ = write!(out, "<script>{JS}</script>\n</body></html>\n");
    out
}

/// Roles always (they explain the lanes); marker kinds only when the run has them.
fn legend(out: &mut String, t: &Timeline) {
    out.push_str("<p class=\"legend\">");
    for (role, _) in ROLE_RGB {
        let _ = write!(
            out,
            "<span><i class=\"sw r-{0}\"></i>{0}</span>",
            role.as_str()
        );
    }
    out.push_str(
        "<span><i class=\"sw fsw\"></i>fault window</span>\
         <span><i class=\"sw vsw\"></i>violation</span>\
         <span><i class=\"sw asw\"></i>applies/commits per time slice</span>",
    );
    if !t.op_bars.is_empty() {
        out.push_str(
            "<span><i class=\"sw o-ok\"></i>client op acknowledged</span>\
             <span><i class=\"sw o-failed\"></i>client op failed</span>\
             <span><i class=\"sw o-unknown\"></i>client op outcome unknown (open to the end)</span>\
             <span><i class=\"sw o-named\"></i>client op a violation names</span>",
        );
    }
    for (kind, what) in crate::timeline::MARKER_KINDS {
        if !t.markers.iter().any(|m| !m.violation && m.kind == *kind) {
            continue;
        }
        let _ = write!(
            out,
            "<span><svg width=\"14\" height=\"16\" viewBox=\"-7 -8 14 16\"><path class=\"m-{kind}\" d=\"{}\"/></svg>{kind} <small>({what})</small></span>",
            shape(kind)
        );
    }
    out.push_str("</p>\n");
}

fn shape(kind: &str) -> &'static str {
    SHAPES
        .iter()
        .find(|(k, _)| *k == kind)
        .map_or(OTHER_SHAPE, |(_, d)| d)
}

/// CSS class of a marker kind: fixed names only, so trace text never reaches a class attribute.
fn marker_class(kind: &str) -> String {
    match SHAPES.iter().find(|(k, _)| *k == kind) {
        Some((k, _)) => format!("m-{k}"),
        None => "m-other".to_string(),
    }
}

fn fault_class(label: &str) -> &'static str {
    match label {
        "partition" | "clog" => "f-net",
        "pause" => "f-pause",
        "loss" | "latency" => "f-link",
        "restart" | "kill" => "f-restart",
        "heal" => "f-heal",
        _ => "f-other",
    }
}

struct Scale {
    /// End of the run; activity buckets divide `[0, end_us]`.
    end_us: u64,
    /// End of the drawn range: a little past the run so markers at its very end show whole.
    view_us: u64,
}

impl Scale {
    fn new(end_us: u64) -> Self {
        Scale {
            end_us,
            view_us: end_us + end_us / 60 + 1,
        }
    }

    fn x(&self, t_us: u64) -> f64 {
        PLOT_X0 as f64 + t_us as f64 / self.view_us as f64 * PLOT_W as f64
    }
}

fn chart(out: &mut String, t: &Timeline) {
    let s = Scale::new(t.end_us);
    let fault_rows = t.fault_rows.max(1) as u64;
    let faults_top = AXIS_H;
    let lanes_top = faults_top + fault_rows * FAULT_ROW_H + 6;
    let mut tops = Vec::with_capacity(t.lanes.len());
    let mut y = lanes_top;
    for lane in &t.lanes {
        tops.push(y);
        y += if lane.is_node { LANE_H } else { CLUSTER_H };
    }
    let mut op_tops = Vec::with_capacity(t.op_lanes.len());
    for _ in &t.op_lanes {
        op_tops.push(y);
        y += OP_LANE_H;
    }
    let height = y + 4;
    let lanes_h = y - lanes_top;
    let amax = activity_scale(t);

    let _ = writeln!(
        out,
        "<svg id=\"chart\" viewBox=\"0 0 {VIEW_W} {height}\" width=\"100%\" \
         data-x0=\"{PLOT_X0}\" data-w=\"{PLOT_W}\" data-vw=\"{VIEW_W}\" data-h=\"{height}\" \
         data-end=\"{}\" data-view=\"{}\" data-amax=\"{amax}\" data-buckets=\"{ACTIVITY_BUCKETS}\" \
         data-axis=\"{AXIS_H}\" role=\"img\" aria-label=\"timeline\">",
        t.end_us, s.view_us
    );
    let _ = writeln!(
        out,
        "<defs><clipPath id=\"clip\"><rect x=\"{PLOT_X0}\" y=\"0\" width=\"{PLOT_W}\" height=\"{height}\"/></clipPath></defs>"
    );

    // Lane backgrounds and labels (outside the clip: they do not move when zooming).
    let _ = writeln!(
        out,
        "<text class=\"lname\" x=\"8\" y=\"{}\">faults</text>",
        faults_top + 10
    );
    for (lane, top) in t.lanes.iter().zip(&tops) {
        let (class, h) = if lane.is_node {
            ("lane node", LANE_H)
        } else {
            ("lane cluster", CLUSTER_H)
        };
        let _ = writeln!(
            out,
            "<g class=\"{class}\" data-lane=\"{0}\"><rect class=\"lbg\" x=\"0\" y=\"{top}\" width=\"{VIEW_W}\" height=\"{h}\"/>\
             <text class=\"lname\" x=\"8\" y=\"{1}\">{0}</text></g>",
            esc(&lane.name),
            top + BAR_Y + 13
        );
    }
    for (name, top) in t.op_lanes.iter().zip(&op_tops) {
        let _ = writeln!(
            out,
            "<g class=\"lane oplane\" data-lane=\"{0}\"><rect class=\"lbg\" x=\"0\" y=\"{top}\" width=\"{VIEW_W}\" height=\"{OP_LANE_H}\"/>\
             <text class=\"oname\" x=\"8\" y=\"{1}\">{0}</text></g>",
            esc(name),
            top + OP_BAR_Y + 8
        );
    }

    let _ = writeln!(out, "<g id=\"axis\">");
    axis(out, &s, height);
    out.push_str("</g>\n<g id=\"plot\" clip-path=\"url(#clip)\">\n");

    // Role segments, with the term written inside when there is room.
    for (lane, top) in t.lanes.iter().zip(&tops) {
        for seg in &lane.segments {
            let (x0, x1) = (s.x(seg.start_us), s.x(seg.end_us));
            let role = seg.role.as_str();
            let label = match seg.term {
                Some(term) => format!("{role}, term {term}"),
                None => role.to_string(),
            };
            let _ = writeln!(
                out,
                "<rect class=\"seg r-{role}\" x=\"{x0:.2}\" y=\"{}\" width=\"{:.2}\" height=\"{BAR_H}\" \
                 data-t0=\"{}\" data-t1=\"{}\" data-k=\"{label}\" data-n=\"{}\" data-d=\"{}\"/>",
                top + BAR_Y,
                x1 - x0,
                seg.start_us,
                seg.end_us,
                esc(&lane.name),
                esc(&seg.detail)
            );
            if let Some(term) = seg.term {
                if matches!(seg.role, Role::Leader | Role::Follower | Role::Candidate) {
                    let visible = if x1 - x0 > 30.0 {
                        ""
                    } else {
                        " style=\"display:none\""
                    };
                    let _ = writeln!(
                        out,
                        "<text class=\"seglabel\" x=\"{:.2}\" y=\"{}\" data-t0=\"{}\" data-t1=\"{}\"{visible}>t{term}</text>",
                        (x0 + x1) / 2.0,
                        top + BAR_Y + 13,
                        seg.start_us,
                        seg.end_us
                    );
                }
            }
        }
        if lane.activity.iter().any(|&c| c > 0) {
            let counts: Vec<String> = lane.activity.iter().map(|c| c.to_string()).collect();
            let _ = writeln!(
                out,
                "<path class=\"act\" data-base=\"{}\" data-ah=\"{ACT_H}\" data-counts=\"{}\" d=\"{}\"/>",
                top + ACT_BASE,
                counts.join(","),
                activity_path(&lane.activity, amax, top + ACT_BASE, &s)
            );
        }
    }

    // Fault windows: a bar in the fault band, and shading over the lanes they touch.
    for (i, f) in t.faults.iter().enumerate() {
        let (x0, x1) = (s.x(f.start_us), s.x(f.end_us));
        let y = faults_top + f.row as u64 * FAULT_ROW_H + 2;
        let class = fault_class(&f.label);
        let nodes = if f.nodes.is_empty() {
            "all".to_string()
        } else {
            f.nodes.join(",")
        };
        let _ = writeln!(
            out,
            "<rect class=\"fault {class}\" x=\"{x0:.2}\" y=\"{y}\" width=\"{:.2}\" height=\"{}\" \
             data-t0=\"{}\" data-t1=\"{}\" data-min=\"3\" data-k=\"fault: {}\" data-n=\"{}\" data-d=\"{}\" data-fi=\"{i}\"/>",
            (x1 - x0).max(3.0),
            FAULT_ROW_H - 2,
            f.start_us,
            f.end_us,
            esc(&f.label),
            esc(&nodes),
            esc(&f.detail)
        );
        // An instant fault's label gets a little room to the right of its mark.
        let label_end_us = f.end_us.max(f.start_us + t.end_us / 40);
        let label_x1 = s.x(label_end_us);
        let visible = if label_x1 - x0 > 30.0 {
            ""
        } else {
            " style=\"display:none\""
        };
        let _ = writeln!(
            out,
            "<text class=\"flabel\" x=\"{:.2}\" y=\"{}\" data-t0=\"{}\" data-t1=\"{label_end_us}\"{visible}>{}</text>",
            (x0 + label_x1) / 2.0,
            y + 9,
            f.start_us,
            esc(&f.label)
        );
        let touched: Vec<usize> = if f.nodes.is_empty() {
            Vec::new()
        } else {
            t.lanes
                .iter()
                .enumerate()
                .filter(|(_, l)| f.nodes.contains(&l.name))
                .map(|(i, _)| i)
                .collect()
        };
        if f.is_instant() {
            let _ = writeln!(
                out,
                "<g class=\"fline\" data-t=\"{}\" data-y=\"{lanes_top}\" transform=\"translate({x0:.2},{lanes_top})\"><line x1=\"0\" y1=\"0\" x2=\"0\" y2=\"{lanes_h}\"/></g>",
                f.start_us
            );
        } else if touched.is_empty() {
            shade(out, f.start_us, f.end_us, x0, x1, lanes_top, lanes_h);
        } else {
            for &l in &touched {
                shade(out, f.start_us, f.end_us, x0, x1, tops[l], LANE_H);
            }
        }
    }

    client_ops(out, t, &s, &op_tops);

    // Markers, then violations on top so nothing hides them.
    for m in t.markers.iter().filter(|m| !m.violation) {
        let y = tops[m.lane] + MARK_Y;
        let count = if m.count > 1 {
            format!(" data-c=\"{}\"", m.count)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "<g class=\"mk {}\" data-t=\"{}\" data-y=\"{y}\" transform=\"translate({:.2},{y})\" \
             data-k=\"{}\" data-n=\"{}\" data-d=\"{}\"{count}><path d=\"{}\"/></g>",
            marker_class(&m.kind),
            m.at_us,
            s.x(m.at_us),
            esc(&m.kind),
            esc(&t.lanes[m.lane].name),
            esc(&m.detail),
            shape(&m.kind)
        );
    }
    for (i, m) in t.violations().enumerate() {
        let x = s.x(m.at_us);
        let _ = writeln!(
            out,
            "<g class=\"vline\" data-t=\"{}\" data-y=\"{lanes_top}\" transform=\"translate({x:.2},{lanes_top})\"><line x1=\"0\" y1=\"0\" x2=\"0\" y2=\"{lanes_h}\"/></g>",
            m.at_us
        );
        let y = tops[m.lane] + MARK_Y;
        let lane = &t.lanes[m.lane].name;
        let node = if lane == CLUSTER_LANE {
            "cluster-wide"
        } else {
            lane
        };
        let _ = writeln!(
            out,
            "<g class=\"mk violation\" id=\"v{i}\" data-t=\"{}\" data-y=\"{y}\" transform=\"translate({x:.2},{y})\" \
             data-k=\"VIOLATION {}\" data-n=\"{}\" data-d=\"{}\"><path d=\"{VIOLATION_SHAPE}\"/></g>",
            m.at_us,
            esc(&m.kind),
            esc(node),
            esc(&m.detail)
        );
    }
    let _ = writeln!(
        out,
        "<rect id=\"sel\" x=\"0\" y=\"0\" width=\"0\" height=\"{height}\" style=\"display:none\"/>"
    );
    out.push_str("</g>\n</svg>\n");
}

/// Client-operation bars, one group per client lane (the group names the lane for the
/// tooltip). Unknown outcomes first leave a thin line open to the run's end, drawn under the
/// bars; operations a violation names come last, taller and outlined.
fn client_ops(out: &mut String, t: &Timeline, s: &Scale, op_tops: &[u64]) {
    for (lane, (name, top)) in t.op_lanes.iter().zip(op_tops).enumerate() {
        let _ = writeln!(out, "<g class=\"ops\" data-n=\"{}\">", esc(name));
        for b in t.op_bars.iter().filter(|b| b.lane == lane) {
            if b.outcome == OpOutcome::Unknown && b.end_us < t.end_us {
                let (x0, x1) = (s.x(b.end_us), s.x(t.end_us));
                let _ = writeln!(
                    out,
                    "<rect class=\"optail\" x=\"{x0:.2}\" y=\"{}\" width=\"{:.2}\" height=\"{OP_TAIL_H}\" data-t0=\"{}\" data-t1=\"{}\"/>",
                    top + OP_TAIL_Y,
                    x1 - x0,
                    b.end_us,
                    t.end_us
                );
            }
        }
        for b in t.op_bars.iter().filter(|b| b.lane == lane) {
            let (x0, x1) = (s.x(b.start_us), s.x(b.end_us));
            // The script keeps ordinary bars at least 1 wide itself (`rect.op`).
            let (class, y, h, min) = if b.named {
                (
                    " o-named",
                    top + OP_BAR_Y - 2,
                    OP_BAR_H + 4,
                    " data-min=\"3\"",
                )
            } else {
                ("", top + OP_BAR_Y, OP_BAR_H, "")
            };
            let width = (x1 - x0).max(if b.named { 3.0 } else { 1.0 });
            let count = if b.count > 1 {
                format!(" data-c=\"{}\"", b.count)
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "<rect class=\"op o-{}{class}\" x=\"{x0:.2}\" y=\"{y}\" width=\"{width:.2}\" height=\"{h}\" \
                 data-t0=\"{}\" data-t1=\"{}\"{min} data-k=\"{}\" data-d=\"{}\"{count}/>",
                b.outcome.as_str(),
                b.start_us,
                b.end_us,
                esc(&b.title),
                esc(&b.detail)
            );
        }
        out.push_str("</g>\n");
    }
}

fn shade(out: &mut String, t0: u64, t1: u64, x0: f64, x1: f64, y: u64, h: u64) {
    let _ = writeln!(
        out,
        "<rect class=\"fshade\" x=\"{x0:.2}\" y=\"{y}\" width=\"{:.2}\" height=\"{h}\" data-t0=\"{t0}\" data-t1=\"{t1}\"/>",
        x1 - x0
    );
}

/// The count drawn at full strip height: the 95th percentile of the non-empty buckets, so one
/// catch-up burst after a restart does not flatten everything else (taller buckets clip).
fn activity_scale(t: &Timeline) -> u32 {
    let mut counts: Vec<u32> = t
        .lanes
        .iter()
        .flat_map(|l| l.activity.iter())
        .copied()
        .filter(|&c| c > 0)
        .collect();
    counts.sort_unstable();
    counts
        .get(counts.len().saturating_sub(1) * 95 / 100)
        .copied()
        .unwrap_or(1)
        .max(1)
}

fn activity_path(counts: &[u32], amax: u32, base: u64, s: &Scale) -> String {
    let n = counts.len() as u64;
    let mut d = String::new();
    for (i, &c) in counts.iter().enumerate() {
        if c == 0 {
            continue;
        }
        let i = i as u64;
        let x0 = s.x(s.end_us * i / n);
        let x1 = s.x(s.end_us * (i + 1) / n);
        let h = (f64::from(c) / f64::from(amax) * ACT_H as f64).clamp(1.0, ACT_H as f64);
        let _ = write!(d, "M{x0:.2},{base}V{:.2}H{x1:.2}V{base}Z", base as f64 - h);
    }
    d
}

/// Time axis labels in simulated seconds with a 1-2-5 step (the script does the same on zoom).
fn axis(out: &mut String, s: &Scale, height: u64) {
    let step = tick_step(s.view_us);
    let decimals = tick_decimals(step);
    let mut t = 0;
    while t <= s.view_us {
        let x = s.x(t);
        let whole = t / 1_000_000;
        let label = if decimals == 0 {
            format!("{whole}s")
        } else {
            let frac = (t % 1_000_000) / 10u64.pow(6 - decimals);
            format!("{whole}.{frac:0width$}s", width = decimals as usize)
        };
        let _ = writeln!(
            out,
            "<line class=\"grid\" x1=\"{x:.2}\" y1=\"{}\" x2=\"{x:.2}\" y2=\"{height}\"/><text class=\"tick\" x=\"{x:.2}\" y=\"14\">{label}</text>",
            AXIS_H - 6
        );
        t += step;
    }
}

/// About ten ticks over `span_us`, on a 1-2-5 grid of microseconds.
pub(crate) fn tick_step(span_us: u64) -> u64 {
    let raw = (span_us / 10).max(1);
    let mut mag = 1u64;
    while mag.saturating_mul(10) <= raw {
        mag *= 10;
    }
    [1, 2, 5, 10]
        .into_iter()
        .map(|m| m * mag)
        .find(|&s| s >= raw)
        .unwrap_or(10 * mag)
}

/// Decimals of seconds a tick label needs for `step_us`.
fn tick_decimals(step_us: u64) -> u32 {
    let mut d = 0;
    let mut unit = 1_000_000;
    while d < 6 && !step_us.is_multiple_of(unit) {
        unit /= 10;
        d += 1;
    }
    d
}

fn violations_table(out: &mut String, seed: &SeedReport) {
    if seed.violations.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "<h2>Violations ({})</h2>\n<table class=\"viol\"><tr><th>time</th><th>node</th><th>kind</th><th>message</th></tr>",
        seed.violations.len()
    );
    // Same order as the chart's violation markers (by time, stable), so row i zooms to `v{i}`.
    let mut order: Vec<&crate::Violation> = seed.violations.iter().collect();
    order.sort_by_key(|v| v.at_ms);
    for (i, v) in order.iter().enumerate() {
        let _ = writeln!(
            out,
            "<tr data-vi=\"{i}\" data-at=\"{}\" title=\"click to zoom here\"><td>{}</td><td>{}</td><td>{}</td><td class=\"msg\">{}</td></tr>",
            v.at_ms.saturating_mul(1000),
            secs_ms(v.at_ms),
            esc(v.node.as_deref().unwrap_or("-")),
            v.kind,
            esc(&v.message)
        );
    }
    out.push_str("</table>\n");
}

/// HTML escaping for text and attribute values; control characters other than tab and newline
/// are dropped so engine output cannot break the document.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

const CSS: &str = r##"
body{font:13px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:10px 14px;color:#212529;background:#fff}
h1{font-size:17px;margin:0 0 2px}h2{font-size:15px;margin:14px 0 4px}
code{font:12px ui-monospace,Menlo,Consolas,monospace;background:#f1f3f5;padding:0 3px}
.st{font-size:12px;padding:1px 6px;border-radius:3px;vertical-align:middle}
.st.FAILED{background:#c92a2a;color:#fff}.st.passed{background:#2b8a3e;color:#fff}
.sum{margin:2px 0}.legend{margin:4px 0;display:flex;flex-wrap:wrap;gap:2px 12px;font-size:12px}
.legend span{display:inline-flex;align-items:center;gap:3px}.legend small{color:#868e96}
.sw{display:inline-block;width:12px;height:10px;border:1px solid #adb5bd}
.fsw{background:rgba(253,126,20,.25)}.vsw{border:2px solid #c92a2a;background:#fff}.asw{background:#868e96}
.ctl{margin:4px 0}.ctl button{font:12px system-ui,sans-serif;min-width:28px;margin-right:2px}
.hint{color:#868e96;font-size:12px}#range{font-weight:600;margin:0 8px}
#chart{display:block;border:1px solid #dee2e6;user-select:none;cursor:crosshair}
.lbg{fill:#fff;stroke:#e9ecef}.lane.cluster .lbg{fill:#f8f9fa}
.lname{font-size:12px;font-weight:600;fill:#343a40}
.tick{font-size:10px;fill:#495057;text-anchor:middle}.grid{stroke:#e9ecef;stroke-width:1}
.seg{stroke:#fff;stroke-width:.5}
.r-leader{fill:#2f9e44}.r-follower{fill:#74c0fc}.r-candidate{fill:#fcc419}
.r-up{fill:#c5f6fa}.r-down{fill:#ced4da}.r-aborted{fill:#862e9c}
.legend .sw.r-leader{background:#2f9e44}.legend .sw.r-follower{background:#74c0fc}
.legend .sw.r-candidate{background:#fcc419}.legend .sw.r-up{background:#c5f6fa}
.legend .sw.r-down{background:#ced4da}.legend .sw.r-aborted{background:#862e9c}
.seglabel{font-size:10px;fill:#fff;text-anchor:middle;pointer-events:none;font-weight:600}
.act{fill:#495057;opacity:.55;pointer-events:none}
.fault{stroke:#fff;stroke-width:.5}.flabel{font-size:9px;fill:#212529;text-anchor:middle;pointer-events:none}
.f-net{fill:#ffc078}.f-pause{fill:#d0bfff}.f-link{fill:#ffe066}.f-restart{fill:#ffa8a8}
.f-heal{fill:#b2f2bb}.f-other{fill:#dee2e6}
.fshade{fill:rgba(253,126,20,.18);pointer-events:none}
.fline line{stroke:#c92a2a;stroke-width:1;stroke-dasharray:3 3;opacity:.7}.fline{pointer-events:none}
.vline line{stroke:#e8001c;stroke-width:1;opacity:.45}.vline{pointer-events:none}
.mk{cursor:pointer}.mk path{stroke:#212529;stroke-width:.8}
.m-leader path{fill:#ffd43b}.m-truncate path{fill:#fd7e14}.m-vote path{fill:#495057;stroke:none}
.m-abort path,.m-crash path{fill:#212529;stroke:#fff}.m-straggler path{fill:#adb5bd}
.m-checkpoint path{fill:#0ca678}.m-pickup path{fill:#1098ad}.m-rotate path{fill:#ae3ec9}
.m-ddl path{fill:#3bc9db}.m-step-up path{fill:#f783ac}.m-drop path{fill:#e8590c}
.m-warn path{fill:#fab005}.m-phase path{fill:#495057;stroke:none}.m-other path{fill:#ced4da}
.legend path{stroke:#212529;stroke-width:.8}
.legend .m-leader{fill:#ffd43b}.legend .m-truncate{fill:#fd7e14}.legend .m-vote{fill:#495057}
.legend .m-abort,.legend .m-crash{fill:#212529}.legend .m-straggler{fill:#adb5bd}
.legend .m-checkpoint{fill:#0ca678}.legend .m-pickup{fill:#1098ad}.legend .m-rotate{fill:#ae3ec9}
.legend .m-ddl{fill:#3bc9db}.legend .m-step-up{fill:#f783ac}.legend .m-drop{fill:#e8590c}
.legend .m-warn{fill:#fab005}.legend .m-phase{fill:#495057}
.violation path{fill:#e8001c;stroke:#7a0010;stroke-width:1}
.violation.hl path{stroke:#000;stroke-width:3}
#sel{fill:rgba(34,139,230,.15);stroke:#228be6;pointer-events:none}
.lane.oplane .lbg{fill:#fcfcfd;stroke:#f1f3f5}.oname{font-size:10px;fill:#495057}
.op{cursor:pointer}.o-ok{fill:#8ce99a}.o-failed{fill:#f783ac}.o-unknown{fill:#f59f00}
.op.o-named{stroke:#c92a2a;stroke-width:1.5}.optail{fill:#f59f00;opacity:.35;pointer-events:none}
.legend .sw.o-ok{background:#8ce99a}.legend .sw.o-failed{background:#f783ac}
.legend .sw.o-unknown{background:#f59f00}.legend .sw.o-named{border:2px solid #c92a2a;background:#8ce99a}
.details{margin:6px 0;padding:6px 8px;background:#f8f9fa;border:1px solid #dee2e6;min-height:20px;white-space:pre-wrap;font:12px ui-monospace,Menlo,Consolas,monospace}
.tip{position:absolute;max-width:560px;background:#212529;color:#f8f9fa;padding:5px 8px;border-radius:4px;font:12px ui-monospace,Menlo,Consolas,monospace;white-space:pre-wrap;pointer-events:none;z-index:10}
.tip b{color:#ffd43b}
table.viol{border-collapse:collapse;font-size:12px}table.viol td,table.viol th{border:1px solid #dee2e6;padding:2px 6px;text-align:left;vertical-align:top}
table.viol tr[data-vi]{cursor:pointer}table.viol tr[data-vi]:hover{background:#fff5f5}
table.viol td:nth-child(3){color:#c92a2a;font-weight:600;white-space:nowrap}
.msg{white-space:pre-wrap}.note{color:#495057;font-size:12px}.notes{font-size:12px}
"##;

const JS: &str = r##"
(function () {
  'use strict';
  var svg = document.getElementById('chart');
  var ds = svg.dataset;
  var X0 = +ds.x0, W = +ds.w, VW = +ds.vw, H = +ds.h, END = +ds.end, AMAX = +ds.amax,
      AXIS = +ds.axis, NS = svg.namespaceURI, VIEW = +ds.view;
  var v0 = 0, v1 = VIEW;
  var tip = document.getElementById('tip'), details = document.getElementById('details');
  var sel = document.getElementById('sel'), range = document.getElementById('range');

  function X(t) { return X0 + (t - v0) / (v1 - v0) * W; }
  function T(x) { return v0 + (x - X0) / W * (v1 - v0); }
  function fmt(us) { us = Math.round(us); return (us / 1e6).toFixed(us % 1000 === 0 ? 3 : 6) + 's'; }
  function tickStep(span) {
    var raw = Math.max(1, Math.floor(span / 10)), mag = 1, m = [1, 2, 5, 10];
    while (mag * 10 <= raw) mag *= 10;
    for (var i = 0; i < m.length; i++) if (m[i] * mag >= raw) return m[i] * mag;
    return 10 * mag;
  }
  function decimals(step) {
    var d = 0, unit = 1e6;
    while (d < 6 && step % unit !== 0) { unit /= 10; d++; }
    return d;
  }
  function axis() {
    var g = document.getElementById('axis');
    while (g.firstChild) g.removeChild(g.firstChild);
    var st = tickStep(v1 - v0), d = decimals(st);
    for (var t = Math.ceil(v0 / st) * st; t <= v1; t += st) {
      var x = X(t);
      var l = document.createElementNS(NS, 'line');
      l.setAttribute('class', 'grid');
      l.setAttribute('x1', x); l.setAttribute('x2', x);
      l.setAttribute('y1', AXIS - 6); l.setAttribute('y2', H);
      g.appendChild(l);
      var tx = document.createElementNS(NS, 'text');
      tx.setAttribute('class', 'tick'); tx.setAttribute('x', x); tx.setAttribute('y', 14);
      tx.textContent = (t / 1e6).toFixed(d) + 's';
      g.appendChild(tx);
    }
  }
  function layout() {
    var lo = X0 - 20, hi = X0 + W + 20;
    svg.querySelectorAll('[data-t0]').forEach(function (e) {
      var a = X(+e.dataset.t0), b = X(+e.dataset.t1);
      if (e.tagName === 'text') {
        var ca = Math.max(a, X0), cb = Math.min(b, X0 + W);
        e.setAttribute('x', (ca + cb) / 2);
        e.style.display = cb - ca > 30 ? '' : 'none';
      } else {
        var min = +(e.dataset.min || (e.classList.contains('op') ? 1 : 0)), x = Math.min(Math.max(a, lo), hi);
        e.setAttribute('x', x);
        e.setAttribute('width', Math.max(Math.min(Math.max(b, lo), hi) - x, min));
      }
    });
    svg.querySelectorAll('[data-t]').forEach(function (e) {
      e.setAttribute('transform', 'translate(' + X(+e.dataset.t) + ',' + e.dataset.y + ')');
    });
    svg.querySelectorAll('path.act').forEach(function (e) {
      if (!e._c) e._c = e.dataset.counts.split(',').map(Number);
      var c = e._c, n = c.length, base = +e.dataset.base, ah = +e.dataset.ah, d = '';
      for (var i = 0; i < n; i++) {
        if (!c[i]) continue;
        var a = X(END * i / n), b = X(END * (i + 1) / n);
        if (b < lo || a > hi) continue;
        var h = Math.min(ah, Math.max(1, c[i] / Math.max(1, AMAX) * ah));
        d += 'M' + a.toFixed(2) + ',' + base + 'V' + (base - h).toFixed(2) + 'H' + b.toFixed(2) + 'V' + base + 'Z';
      }
      e.setAttribute('d', d);
    });
    axis();
    range.textContent = 'showing ' + fmt(v0) + ' \u2013 ' + fmt(Math.min(v1, END)) + ' of ' + fmt(END);
  }
  function zoom(a, b) {
    var span = Math.max(b - a, 100);
    span = Math.min(span, VIEW);
    var mid = (a + b) / 2;
    a = mid - span / 2; b = mid + span / 2;
    if (a < 0) { b -= a; a = 0; }
    if (b > VIEW) { a -= b - VIEW; b = VIEW; }
    v0 = Math.max(0, a); v1 = b;
    layout();
  }
  function scaleAround(f, t) {
    if (t === undefined) t = (v0 + v1) / 2;
    zoom(t - (t - v0) * f, t + (v1 - t) * f);
  }
  function pan(f) { var s = (v1 - v0) * f; zoom(v0 + s, v1 + s); }

  function describe(e) {
    var d = e.dataset, when;
    if (d.t !== undefined) when = fmt(+d.t);
    else when = fmt(+d.t0) + ' \u2013 ' + fmt(+d.t1) + ' (' + fmt(d.t1 - d.t0) + ')';
    var n = d.n || (e.parentNode && e.parentNode.getAttribute && e.parentNode.getAttribute('data-n'));
    var head = d.k + '  ' + (n ? n + '  ' : '') + '@ ' + when;
    if (d.c) head += '  (\u00d7' + d.c + ')';
    return [head, d.d || ''];
  }
  function fill(box, e) {
    var parts = describe(e);
    while (box.firstChild) box.removeChild(box.firstChild);
    var b = document.createElement('b');
    b.textContent = parts[0];
    box.appendChild(b);
    if (parts[1]) box.appendChild(document.createTextNode('\n' + parts[1]));
  }
  function vx(ev) { var r = svg.getBoundingClientRect(); return (ev.clientX - r.left) * VW / r.width; }

  svg.addEventListener('mousemove', function (ev) {
    var e = ev.target.closest && ev.target.closest('[data-k]');
    if (!e || drag) { tip.hidden = true; return; }
    fill(tip, e);
    tip.hidden = false;
    var x = ev.pageX + 14, maxX = window.scrollX + document.documentElement.clientWidth - tip.offsetWidth - 8;
    tip.style.left = Math.max(0, Math.min(x, maxX)) + 'px';
    tip.style.top = (ev.pageY + 16) + 'px';
  });
  svg.addEventListener('mouseleave', function () { tip.hidden = true; });

  var drag = null, dragged = false;
  svg.addEventListener('mousedown', function (ev) {
    var x = vx(ev);
    if (ev.button !== 0 || x < X0 || x > X0 + W) return;
    drag = { a: x, b: x }; dragged = false;
    ev.preventDefault();
  });
  window.addEventListener('mousemove', function (ev) {
    if (!drag) return;
    drag.b = Math.min(Math.max(vx(ev), X0), X0 + W);
    var a = Math.min(drag.a, drag.b), w = Math.abs(drag.b - drag.a);
    if (w > 4) dragged = true;
    sel.setAttribute('x', a); sel.setAttribute('width', w);
    sel.style.display = dragged ? '' : 'none';
  });
  window.addEventListener('mouseup', function () {
    if (!drag) return;
    var a = Math.min(drag.a, drag.b), b = Math.max(drag.a, drag.b);
    drag = null; sel.style.display = 'none';
    if (dragged) zoom(T(a), T(b));
  });
  svg.addEventListener('click', function (ev) {
    if (dragged) { dragged = false; return; }
    var e = ev.target.closest && ev.target.closest('[data-k]');
    if (e) fill(details, e);
  });
  svg.addEventListener('dblclick', function () { zoom(0, VIEW); });
  svg.addEventListener('wheel', function (ev) {
    if (!ev.ctrlKey && !ev.metaKey) return;
    ev.preventDefault();
    scaleAround(ev.deltaY > 0 ? 1.25 : 0.8, T(Math.min(Math.max(vx(ev), X0), X0 + W)));
  }, { passive: false });
  document.getElementById('zin').onclick = function () { scaleAround(0.5); };
  document.getElementById('zout').onclick = function () { scaleAround(2); };
  document.getElementById('pl').onclick = function () { pan(-0.25); };
  document.getElementById('pr').onclick = function () { pan(0.25); };
  document.getElementById('zreset').onclick = function () { zoom(0, VIEW); };
  document.addEventListener('keydown', function (ev) {
    if (ev.target && /INPUT|TEXTAREA/.test(ev.target.tagName)) return;
    if (ev.key === '+' || ev.key === '=') scaleAround(0.5);
    else if (ev.key === '-') scaleAround(2);
    else if (ev.key === '0') zoom(0, VIEW);
    else if (ev.key === 'ArrowLeft') pan(-0.25);
    else if (ev.key === 'ArrowRight') pan(0.25);
  });
  document.querySelectorAll('tr[data-vi]').forEach(function (row) {
    row.addEventListener('click', function () {
      var t = +row.dataset.at;
      zoom(t - 2e6, t + 2e6);
      var m = document.getElementById('v' + row.dataset.vi);
      if (m) {
        fill(details, m);
        m.classList.add('hl');
        setTimeout(function () { m.classList.remove('hl'); }, 1500);
      }
      svg.scrollIntoView({ block: 'nearest' });
    });
  });

  // `#t=9500..11000` (simulated ms) opens the page zoomed there; zooming keeps it current,
  // so the address of a view can be shared.
  var m = /t=(\d+(?:\.\d+)?)\.\.(\d+(?:\.\d+)?)/.exec(location.hash);
  if (m) { v0 = Math.max(0, +m[1] * 1000); v1 = Math.min(VIEW, Math.max(v0 + 100, +m[2] * 1000)); }
  var layoutOnly = layout;
  layout = function () {
    layoutOnly();
    try { history.replaceState(null, '', '#t=' + Math.round(v0 / 1000) + '..' + Math.round(v1 / 1000)); } catch (e) { /* file:// may refuse */ }
  };

  // `#selftest`: hover, click and zoom the first violation (or any marker) with synthetic
  // events and report in the DOM marker, so a headless browser can check the interaction.
  function selftest() {
    var mk = svg.querySelector('g.violation') || svg.querySelector('g.mk') || svg.querySelector('[data-k]');
    if (!mk) return 'selftest:no-markers';
    var r = mk.getBoundingClientRect();
    mk.dispatchEvent(new MouseEvent('mousemove', { bubbles: true, clientX: r.left + r.width / 2, clientY: r.top + r.height / 2 }));
    var hover = !tip.hidden && tip.textContent.indexOf(mk.dataset.k) === 0;
    mk.dispatchEvent(new MouseEvent('click', { bubbles: true }));
    var click = details.textContent.indexOf(mk.dataset.k) === 0;
    var saved = [v0, v1], t = +(mk.dataset.t || mk.dataset.t0);
    zoom(t - 1e6, t + 1e6);
    var x = +/translate\(([-\d.e]+)/.exec(mk.getAttribute('transform') || 'translate(' + X(t))[1];
    var zoomed = Math.abs(x - X(t)) < 0.5 && x >= X0 && x <= X0 + W;
    zoom(saved[0], saved[1]);
    tip.hidden = true;
    return 'selftest:' + (hover && click && zoomed ? 'ok' : 'FAIL(hover=' + hover + ',click=' + click + ',zoom=' + zoomed + ')');
  }

  layoutOnly();
  var test = /selftest/.test(location.hash) ? ' ' + selftest() : '';
  document.body.dataset.rendered =
    'lanes:' + svg.querySelectorAll('g.lane.node').length +
    ' violations:' + svg.querySelectorAll('g.violation').length +
    ' markers:' + svg.querySelectorAll('g.mk').length +
    ' faults:' + svg.querySelectorAll('rect.fault').length +
    ' segments:' + svg.querySelectorAll('rect.seg').length +
    ' ops:' + svg.querySelectorAll('rect.op').length +
    ' view:' + Math.round(v0 / 1000) + '..' + Math.round(v1 / 1000) + test;
})();
"##;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeline::tests::{ev, op, sample, sample_ops};
    use crate::ViolationKind;

    #[test]
    fn one_lane_per_node_and_the_violations_in_red() {
        let (seed, trace) = sample();
        let html = render("restart-test", &seed, &trace);
        for lane in ["n1", "n2", "n3", "clients"] {
            assert!(
                html.contains(&format!("<g class=\"lane node\" data-lane=\"{lane}\">")),
                "a lane for {lane}"
            );
        }
        assert!(html.contains("<g class=\"lane cluster\" data-lane=\"cluster\">"));
        assert_eq!(html.matches("class=\"mk violation\"").count(), 2);
        assert!(html.contains("data-k=\"VIOLATION node-abort\" data-n=\"n3\""));
        assert!(html.contains("data-k=\"VIOLATION durability\" data-n=\"cluster-wide\""));
        assert!(html.contains(".violation path{fill:#e8001c"));
        assert!(html.contains("class=\"seg r-leader\""));
        assert!(html.contains("class=\"seg r-aborted\""));
        assert!(html.contains("class=\"fault f-net\""));
        assert!(html.contains("class=\"mk m-leader\""));
        assert!(html.contains("document.body.dataset.rendered"));
        // The exact violation red is used for violation markers only (the vline is translucent).
        assert_eq!(html.matches("#e8001c").count(), 2, "marker fill and vline");
    }

    #[test]
    fn self_contained_without_any_fetch() {
        let (seed, trace) = sample();
        let html = render("x", &seed, &trace);
        assert!(!html.contains("http://") && !html.contains("https://"));
        for needle in [
            "src=",
            "href=",
            "@import",
            "url(http",
            "fetch(",
            "XMLHttpRequest",
        ] {
            assert!(!html.contains(needle), "no `{needle}`");
        }
        assert!(
            html.contains("default-src 'none'"),
            "the CSP forbids fetches"
        );
        // A URL inside engine output is text, not a fetch.
        let mut trace = trace;
        trace.push(ev(10, "n1", "warn", "see https://example.invalid/x.js"));
        let html = render("x", &seed, &trace);
        for needle in ["src=", "href="] {
            assert!(!html.contains(needle), "no `{needle}`");
        }
        // The only url() is the clip path, a reference inside the page.
        assert_eq!(
            html.matches("url(").count(),
            html.matches("url(#clip)").count()
        );
    }

    #[test]
    fn escapes_markup_in_details_names_and_messages() {
        let (mut seed, mut trace) = sample();
        trace.push(ev(
            20,
            "n1",
            "warn",
            "<script>alert(1)</script> \"q\" & 'a'",
        ));
        trace.push(ev(30, "n<b>", "leader", "term 1"));
        seed.replay = "faultline run <x>".into();
        let html = render("<scn>", &seed, &trace);
        assert!(!html.contains("<script>alert"));
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt; &quot;q&quot; &amp; &#39;a&#39;")
        );
        assert!(html.contains("data-lane=\"n&lt;b&gt;\""));
        assert!(html.contains("truncate below commit &lt;boom&gt;"));
        assert!(html.contains("faultline: &lt;scn&gt; seed 7"));
        assert!(!html.contains("<b>\""));
        assert_eq!(html.matches("<script>").count(), 1, "only our own script");
    }

    #[test]
    fn a_100k_event_trace_renders_small() {
        let mut trace = Vec::new();
        for i in 0..100_000u64 {
            let node = format!("n{}", i % 3 + 1);
            let (kind, detail) = match i % 5000 {
                0 => ("leader", format!("term {}", i / 5000)),
                1 => ("follower", format!("term {}", i / 5000)),
                2 => ("checkpoint", String::new()),
                _ if i % 2 == 0 => ("apply", format!("{i} term 1")),
                _ => ("commit", format!("{i} term 1")),
            };
            trace.push(TraceEvent {
                at_us: i * 600,
                node,
                kind: kind.into(),
                detail,
            });
        }
        let seed = SeedReport {
            sim_ms: 60_000,
            ..Default::default()
        };
        let started = std::time::Instant::now();
        let html = render("big", &seed, &trace);
        assert!(html.len() < 400_000, "{} bytes", html.len());
        assert!(html.matches("<rect class=\"seg").count() < 200);
        assert!(!html.contains("data-k=\"apply\""));
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "fast enough"
        );
    }

    #[test]
    fn client_lanes_draw_one_bar_per_op_coloured_by_outcome() {
        let (seed, trace) = sample();
        let html = render_with_ops("x", &seed, &trace, &sample_ops());
        for lane in ["client 0", "client 1", "ddl"] {
            assert!(
                html.contains(&format!("<g class=\"lane oplane\" data-lane=\"{lane}\">")),
                "a lane for {lane}"
            );
            assert!(html.contains(&format!("<g class=\"ops\" data-n=\"{lane}\">")));
        }
        // Client lanes are not node lanes: the DOM marker's node count stays the trace's.
        assert_eq!(html.matches("class=\"lane node\"").count(), 4);
        assert_eq!(
            html.matches("<rect class=\"op ").count(),
            8,
            "one bar per op"
        );
        assert_eq!(html.matches("class=\"op o-ok").count(), 5);
        assert_eq!(html.matches("class=\"op o-failed").count(), 1);
        assert_eq!(html.matches("class=\"op o-unknown").count(), 2);
        // The given-up delete stays open to the run's end; the in-flight put already reaches it.
        assert_eq!(html.matches("<rect class=\"optail\"").count(), 1);
        assert!(html.contains("data-t0=\"2600000\" data-t1=\"6100000\"/>"));
        assert!(html.contains(
            "data-k=\"get c0/k2\" data-d=\"op 2: acknowledged as index 12 term 1\nread &quot;w1&quot;"
        ));
        assert!(html.contains("client op outcome unknown (open to the end)"));
        assert!(html.contains("' ops:' + svg.querySelectorAll('rect.op').length"));
        // Without a history the page has no client lanes and no op legend.
        let plain = render("x", &seed, &trace);
        assert!(!plain.contains("class=\"lane oplane\"") && !plain.contains("<rect class=\"op "));
        assert!(!plain.contains("client op acknowledged"));
    }

    #[test]
    fn ops_a_violation_names_are_outlined_and_drawn_last() {
        let (seed, trace) = sample();
        let html = render_with_ops("x", &seed, &trace, &sample_ops());
        assert_eq!(html.matches(" o-named\" x=").count(), 2);
        assert!(html.contains("class=\"op o-ok o-named\""));
        assert!(html.contains("NAMED BY the linearizability violation"));
        // Within client 1's lane the named ops come after the others.
        let lane = &html[html.find("data-n=\"client 1\"").unwrap()..];
        let lane = &lane[..lane.find("</g>").unwrap()];
        let first_named = lane.find("o-named").unwrap();
        assert!(!lane[first_named..].contains("class=\"op o-unknown\""));
        // The outline is not the violation red the screenshot check counts.
        assert_eq!(html.matches("#e8001c").count(), 2);
    }

    #[test]
    fn client_op_keys_values_and_reads_are_escaped() {
        let (seed, trace) = sample();
        let mut ops = sample_ops();
        ops[0].collection = "<c>".into();
        ops[0].key = Some("k\"<script>".into());
        ops[0].value = Some("\"<b>&'\"".into());
        ops[3].read = Some("<img onerror=x>".into());
        let html = render_with_ops("x", &seed, &trace, &ops);
        assert!(html.contains("data-k=\"put &lt;c&gt;/k&quot;&lt;script&gt;\""));
        assert!(html.contains("value &quot;&lt;b&gt;&amp;&#39;&quot;"));
        assert!(html.contains("read &lt;img onerror=x&gt;"));
        assert!(!html.contains("<img") && !html.contains("<b>"));
        assert_eq!(html.matches("<script>").count(), 1, "only our own script");
    }

    #[test]
    fn a_30k_op_history_renders_small() {
        let mut ops = Vec::new();
        for i in 0..30_000u64 {
            let outcome = if i % 40 == 0 {
                OpOutcome::Unknown
            } else {
                OpOutcome::Ok
            };
            let kind = ["put", "get", "append"][(i % 3) as usize];
            let mut o = op(
                Some((i % 5) as u32),
                i,
                kind,
                i * 2,
                Some(i * 2 + 1),
                outcome,
            );
            if i % 3000 == 11 {
                o.named_by = vec![ViolationKind::Durability];
            }
            ops.push(o);
        }
        let seed = SeedReport {
            sim_ms: 60_000,
            ..Default::default()
        };
        let started = std::time::Instant::now();
        let plain = render("big", &seed, &[]);
        let html = render_with_ops("big", &seed, &[], &ops);
        let bars = html.matches("<rect class=\"op ").count();
        assert!(bars <= crate::timeline::MAX_OP_BARS, "{bars} bars");
        assert_eq!(
            html.matches(" o-named\" x=").count(),
            10,
            "named ops stay single"
        );
        assert!(html.contains("client operations were merged"));
        assert!(
            html.len() - plain.len() < 500_000,
            "{} bytes for the ops",
            html.len() - plain.len()
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "fast enough"
        );
    }

    #[test]
    fn tick_steps_are_one_two_five() {
        assert_eq!(tick_step(16_100_000), 2_000_000);
        assert_eq!(tick_step(4_000_000), 500_000);
        assert_eq!(tick_step(1), 1);
        assert_eq!(tick_decimals(2_000_000), 0);
        assert_eq!(tick_decimals(500_000), 1);
        assert_eq!(tick_decimals(20_000), 2);
        assert_eq!(tick_decimals(5), 6);
    }

    #[test]
    fn empty_report_renders() {
        let html = render("", &SeedReport::default(), &[]);
        assert!(html.contains("data-lane=\"cluster\""));
        assert!(html.ends_with("</html>\n"));
    }
}
