// hwflow_feeder: streams one layer's recorded operands through its MAC engine.
//
// Operand memories come from $readmemh files <vectors>/<NAME>_x.hex and _w.hex (one
// line per cycle, lane 0 in the low byte); after the last of PASSES results the sums
// go to <results>/<NAME>_acc.hex ($writememh, one line per pass, lane 0 in the low
// AW bits). The directories arrive as strings on vdir/rdir (the testbench writes them)
// and the memories load when `start` rises. One MAC per lane per cycle, passes back to
// back; `done` rises once the results file is written. With REQUANT=1 the engine also
// gets one offset per lane and pass (<NAME>_offset.hex, OW bits per lane) and its 8-bit
// codes go to <NAME>_code.hex beside the sums.
module hwflow_feeder #(
    parameter LANES = 1,
    parameter K = 1,
    parameter PASSES = 1,
    parameter AW = 32,
    parameter OW = 1,
    parameter REQUANT = 0,
    parameter NAME = "layer"
) (
    input  wire                clk,
    input  wire                start,
    input  wire [8*1024-1:0]   vdir,
    input  wire [8*1024-1:0]   rdir,
    output reg [8*LANES-1:0]   x,
    output reg [8*LANES-1:0]   w,
    output reg                 valid,
    output reg                 clear,
    output reg                 last,
    output reg [OW*LANES-1:0]  offset,
    input  wire [AW*LANES-1:0] acc,
    input  wire [8*LANES-1:0]  code,
    input  wire                acc_valid,
    output reg                 done
);
    localparam T = PASSES * K;
    reg [8*LANES-1:0]  xm [0:T-1];
    reg [8*LANES-1:0]  wm [0:T-1];
    reg [AW*LANES-1:0] rm [0:PASSES-1];
    reg [OW*LANES-1:0] om [0:PASSES-1];
    reg [8*LANES-1:0]  cm [0:PASSES-1];
    reg [8*1100-1:0]   fname;
    reg                loaded;
    integer t, k, r;

    initial begin
        t = 0; k = 0; r = 0; loaded = 0;
        x = 0; w = 0; valid = 0; clear = 0; last = 0; done = 0; offset = 0;
    end

    always @(posedge start) begin
        $sformat(fname, "%0s/%0s_x.hex", vdir, NAME);
        $readmemh(fname, xm);
        $sformat(fname, "%0s/%0s_w.hex", vdir, NAME);
        $readmemh(fname, wm);
        if (REQUANT) begin
            $sformat(fname, "%0s/%0s_offset.hex", vdir, NAME);
            $readmemh(fname, om);
        end
        loaded = 1;
    end

    always @(posedge clk) begin
        if (loaded && t < T) begin
            x <= xm[t];
            w <= wm[t];
            if (REQUANT) offset <= om[t / K];
            valid <= 1'b1;
            clear <= (k == 0);
            last <= (k == K - 1);
            t <= t + 1;
            k <= (k == K - 1) ? 0 : k + 1;
        end else begin
            valid <= 1'b0;
            clear <= 1'b0;
            last <= 1'b0;
        end
        if (acc_valid && r < PASSES) begin
            rm[r] = acc;  // blocking: $writememh below must see this pass
            cm[r] = code;
            r = r + 1;
            if (r == PASSES) begin
                $sformat(fname, "%0s/%0s_acc.hex", rdir, NAME);
                $writememh(fname, rm);
                if (REQUANT) begin
                    $sformat(fname, "%0s/%0s_code.hex", rdir, NAME);
                    $writememh(fname, cm);
                end
                done <= 1'b1;
            end
        end
    end
endmodule
