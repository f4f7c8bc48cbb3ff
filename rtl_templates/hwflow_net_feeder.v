// hwflow_net_feeder: runs IMAGES images through hwflow_net, one after the other.
//
// The image codes come from <vectors>/net_image.hex ($readmemh, one 8-bit code per line,
// each image PIXELS codes in PyTorch (C, H, W) order). For every image: stream its
// codes (image_valid), pulse start, wait for the net's done. Every tap event goes to
// <results>/net_trace.txt, one line each:
//   A <image> <stage> <hex sums>              an engine's sums of one output position
//   B <image> <buffer> <address> <hex word>   a feature-map buffer write
//   C <image> <class>                         the class
// `done` rises after the last image (the file is closed then).
module hwflow_net_feeder #(
    parameter IMAGES = 1,
    parameter PIXELS = 1,
    parameter AB = 1,
    parameter WB = 8,
    parameter ADB = 1
) (
    input  wire              clk,
    input  wire              start,
    input  wire [8*1024-1:0] vdir,
    input  wire [8*1024-1:0] rdir,
    output reg  [7:0]        image_code,
    output reg               image_valid,
    output reg               net_start,
    input  wire              net_done,
    input  wire [7:0]        cls,
    input  wire              acc_valid,
    input  wire [3:0]        acc_stage,
    input  wire [AB-1:0]     acc,
    input  wire              buf_we,
    input  wire [3:0]        buf_id,
    input  wire [ADB-1:0]    buf_addr,
    input  wire [WB-1:0]     buf_data,
    output reg               done
);
    reg [7:0] im [0:IMAGES*PIXELS-1];
    reg [8*1100-1:0] fname;
    reg loaded;
    integer f, img, p, phase;

    initial begin
        loaded = 0; img = 0; p = 0; phase = 0; f = 0;
        image_code = 0; image_valid = 0; net_start = 0; done = 0;
    end

    always @(posedge start) begin
        $sformat(fname, "%0s/net_image.hex", vdir);
        $readmemh(fname, im);
        $sformat(fname, "%0s/net_trace.txt", rdir);
        f = $fopen(fname, "w");
        loaded = 1;
    end

    always @(posedge clk) begin
        image_valid <= 1'b0;
        net_start <= 1'b0;
        if (loaded && !done) begin
            if (acc_valid) $fwrite(f, "A %0d %0d %h\n", img, acc_stage, acc);
            if (buf_we) $fwrite(f, "B %0d %0d %0d %h\n", img, buf_id, buf_addr, buf_data);
            case (phase)
                0: begin  // stream the image's codes
                    image_code <= im[img * PIXELS + p];
                    image_valid <= 1'b1;
                    p = p + 1;
                    if (p == PIXELS) begin
                        p = 0;
                        phase = 1;
                    end
                end
                1: begin
                    net_start <= 1'b1;
                    phase = 2;
                end
                2: if (net_done) begin
                    $fwrite(f, "C %0d %0d\n", img, cls);
                    img = img + 1;
                    phase = (img == IMAGES) ? 3 : 0;
                end
                default: begin
                    $fclose(f);
                    done <= 1'b1;
                end
            endcase
        end
    end
endmodule
